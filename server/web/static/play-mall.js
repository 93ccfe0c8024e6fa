// The coin mall on /play: the catalog as `mall` shows it to this player (price, stock,
// limit, level lock, sale window), a Buy button per item (`mall_buy`), and the player's
// recent orders, kept current by `mall_order` pushes.
//
// A buy's request id is its order (docs/protocol.md, mall_buy): each new press sends a
// fresh id, but a press whose answer never came (a timeout, a retryable error) keeps its
// id, so pressing again finishes that same order instead of placing a second one.

import { $, el, problem, when } from "./play-ui.js";

// What the points center's refusals mean, for people (docs/protocol.md, Errors).
const POINTS_PROBLEMS = {
  SOLD_OUT: "sold out: every unit is sold or reserved (a reserved one may come back later)",
  LIMIT_REACHED: "you reached your limit for this item",
  LEVEL_TOO_LOW: "your member level is too low for this item",
  INSUFFICIENT_FUNDS: "not enough coins",
  NOT_ON_SALE: "not on sale yet",
  SALE_ENDED: "the sale has ended",
  DAILY_ORDERS_MAX: "you placed today's maximum of orders",
  PENDING_PAYMENTS_MAX: "too many orders await payment: pay or wait for one first",
  HOLDS_FULL: "too many of your orders hold coins: pay or wait for one first",
  UNKNOWN_ITEM: "this item is no longer in the mall",
  RESERVATION_LAPSED: "the order lapsed, nothing was charged: press again",
  ORDER_MISMATCH: "the order could not be placed: press again",
  DAILY_CAP_REACHED: "you used today's draws in this pool",
  DRAW_PERIOD_FULL: "the pool is full for this period: come back next period",
  UNKNOWN_POOL: "no such pool",
  TIMEOUT: "no answer yet: press again to finish the same request",
};

/** Codes after which the request may or may not have been applied: retry with its id. */
const UNSURE = new Set(["TIMEOUT", "BUSY", "STORE_UNAVAILABLE", "INTERNAL", "RATE_LIMITED", "CLOSED"]);

export function pointsProblem(error) {
  return POINTS_PROBLEMS[error?.code] ?? problem(error);
}

/** A fresh request id: random, unique per player over the server's retention window. */
export function freshId(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * Request ids per action: `take(key)` is a fresh id, or the id of an earlier attempt whose
 * outcome is unknown; `settle(key, error)` forgets it unless the error leaves it unknown.
 */
export class RequestIds {
  constructor(prefix) {
    this.prefix = prefix;
    this.open = new Map();
  }

  take(key) {
    if (!this.open.has(key)) this.open.set(key, freshId(this.prefix));
    return this.open.get(key);
  }

  settle(key, error = null) {
    if (error === null || !UNSURE.has(error.code)) this.open.delete(key);
  }
}

/** 990 fen -> "¥9.90" */
export const yuan = (fen) => `¥${(fen / 100).toFixed(2)}`;

const price = (coins, cashFen) => (cashFen > 0 ? `${coins} coins + ${yuan(cashFen)}` : `${coins} coins`);

const STATES = {
  pending_payment: "awaiting payment",
  paid: "paid",
  delivered: "delivered",
  cancelled: "cancelled",
  expired: "expired",
};

export class Mall {
  constructor(app) {
    this.app = app;
    this.view = null;
    this.ids = new RequestIds("mall");
    this.reloadTimer = null;
  }

  async load() {
    this.view = await this.app.client.ops.mall();
    this.app.setBalance(this.view.balance);
    this.render();
    return this.view;
  }

  title(item) {
    return this.view?.items.find((i) => i.item === item)?.title ?? item;
  }

  /** Why an item cannot be bought now, as the view says (null: it can). */
  blocked(item) {
    const nowMs = this.app.clock.now();
    if (item.locked) return `Level ${item.level_min}+`;
    if (!item.on_sale) return item.ends_ms && nowMs >= item.ends_ms ? "Sale ended" : "Not on sale";
    if (item.stock_left === 0) return "Sold out";
    if (item.limit_left === 0) return "Limit reached";
    if (this.view.available < item.coins) return "Not enough coins";
    return null;
  }

  render() {
    const view = this.view;
    $("mall-wallet").textContent = `${view.available} of ${view.balance} coins available · member level ${view.level}`;
    const rows = view.items.map((item) => {
      const why = this.blocked(item);
      const sale = item.starts_ms || item.ends_ms
        ? `on sale ${item.starts_ms ? when(item.starts_ms) : "now"} – ${item.ends_ms ? when(item.ends_ms) : "on"}`
        : null;
      return el(
        "li",
        {
          class: "item",
          "data-test": `mall-item-${item.item}`,
          "data-locked": String(item.locked),
          "data-on-sale": String(item.on_sale),
        },
        el(
          "div",
          { class: "item-head" },
          el("span", { class: "name" }, item.title),
          el("span", { class: "tag" }, item.kind),
          item.locked && el("span", { class: "tag lock", "data-test": `mall-locked-${item.item}` }, `level ${item.level_min}+`),
        ),
        el("div", { class: "price", "data-test": `mall-price-${item.item}` }, price(item.coins, item.cash_fen)),
        el(
          "div",
          { class: "sub" },
          el("span", { "data-test": `mall-stock-${item.item}` }, `${item.stock_left} left`),
          " · ",
          el("span", { "data-test": `mall-limit-${item.item}` }, item.limit_left === null ? "no limit per player" : `you may buy ${item.limit_left} more`),
          sale && " · ",
          sale && el("span", { "data-test": `mall-window-${item.item}` }, sale),
        ),
        el(
          "button",
          {
            class: "primary",
            "data-test": `mall-buy-${item.item}`,
            disabled: why !== null,
            title: why ?? "",
            onclick: () => this.buy(item.item),
          },
          why ?? (item.cash_fen > 0 ? "Order" : "Buy"),
        ),
      );
    });
    if (rows.length === 0) rows.push(el("li", { class: "note" }, "The mall is empty."));
    $("mall-items").replaceChildren(...rows);
    this.renderOrders();
  }

  renderOrders() {
    const orders = this.view.orders.map((order) =>
      el(
        "li",
        { "data-test": `mall-order-${order.order_id}`, "data-item": order.item, "data-state": order.state },
        el("span", { class: "name" }, this.title(order.item)),
        el("span", { class: `tag state-${order.state}`, "data-test": "mall-order-state" }, STATES[order.state] ?? order.state),
        el(
          "span",
          { class: "sub" },
          `${price(order.coins, order.cash_fen)} · ${when(order.created_ms)}`,
          order.state === "pending_payment" && order.expires_ms ? ` · pay ${yuan(order.cash_fen)} by ${when(order.expires_ms)}` : "",
          order.reason ? ` · ${order.reason}` : "",
        ),
      ),
    );
    if (orders.length === 0) orders.push(el("li", { class: "note" }, "No orders yet."));
    $("mall-orders").replaceChildren(...orders);
  }

  async buy(item) {
    const id = this.ids.take(item);
    $("mall-result").textContent = "";
    $("mall-result").className = "note";
    try {
      const bought = await this.app.client.call("mall_buy", { item }, { id });
      this.ids.settle(item);
      const order = bought.order;
      this.upsert(order);
      this.app.setBalance(bought.balance);
      $("mall-result").textContent =
        order.state === "pending_payment"
          ? `Ordered ${this.title(item)}: ${order.coins} coins held; pay ${yuan(order.cash_fen)} at the shop by ${when(order.expires_ms)}`
          : `Bought ${this.title(item)} for ${order.coins} coins (${STATES[order.state] ?? order.state})`;
      await this.load();
    } catch (error) {
      this.ids.settle(item, error);
      $("mall-result").textContent = `${this.title(item)}: ${pointsProblem(error)}`;
      $("mall-result").className = "error";
      this.load().catch(() => {}); // the view was stale: show it as it is now
    }
  }

  /** An order as the server says it is now (a reply or a `mall_order` push). */
  upsert(order) {
    if (this.view === null) return;
    const orders = this.view.orders.filter((o) => o.order_id !== order.order_id);
    orders.unshift(order);
    orders.sort((a, b) => b.created_ms - a.created_ms);
    this.view.orders = orders;
    this.renderOrders();
  }

  onPush(order) {
    this.upsert(order);
    // Stock, limits and the available coins moved with it: read the catalog again, once.
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.load().catch(() => {}), 200);
  }

  static says(order) {
    return `Order ${order.item}: ${STATES[order.state] ?? order.state}`;
  }
}
