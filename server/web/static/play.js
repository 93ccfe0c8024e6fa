// /play: the manor for a player, on the JavaScript client (clients/js, served at /js/).
// Sign-in by name (MANOR_DEV_LOGIN=1) or by token (#token=... or the token box), then one
// client for the page: ops on buttons, pushes into the feed and toasts as they arrive.

import { ManorClient } from "/js/index.js";

import { Draw } from "./play-draw.js";
import { Farm, GrowTimes, Visit } from "./play-farm.js";
import { Friends } from "./play-friends.js";
import { Mall } from "./play-mall.js";
import { $, ServerClock, clockTime, el, problem, toast } from "./play-ui.js";
import { Wallet } from "./play-wallet.js";

const TOKEN_KEY = "manor.token";
const TICK_MS = 250;
const REFRESH_MS = 15_000; // friends' crops change without a push to me: look again
const FEED_MAX = 100;

class Play {
  constructor(token) {
    this.token = token;
    this.client = null;
    this.balance = null; // as the page shows it
    this.clock = new ServerClock();
    this.grow = null;
    this.unread = 0;
  }

  async start() {
    this.client = new ManorClient(location.origin, { token: this.token });
    this.client.on("status", (status) => {
      $("conn").dataset.status = status;
      $("conn").title = status;
    });
    this.client.on("push", (push) => this.onPush(push));
    this.client.on("wallet", (info) => this.onWallet(info));
    this.client.on("open", ({ resumed }) => {
      if (resumed && this.wallet) this.reload().catch(() => {}); // the view may be older than the pushes
    });
    await this.client.open();
    // Bound only once the socket is open: a failed attempt leaves no listeners behind.
    this.farm = new Farm(this);
    this.visit = new Visit(this);
    this.friends = new Friends(this);
    this.wallet = new Wallet(this);
    this.mall = new Mall(this);
    this.draw = new Draw(this);
    const state = await this.wallet.loadState();
    this.player = state.player;
    $("player").textContent = state.player;
    this.grow = new GrowTimes(state.rules_version);
    $("login").hidden = true;
    $("main").hidden = false;
    await this.reload();
    setInterval(() => {
      this.farm.tick();
      this.visit.tick();
    }, TICK_MS);
    setInterval(() => this.refresh().catch(() => {}), REFRESH_MS);
  }

  async reload() {
    await Promise.all([this.wallet.loadState(), this.farm.load(), this.friends.load(), this.wallet.loadLedger()]);
    await this.visit.load();
  }

  async refresh() {
    if (this.client.status !== "open") return;
    await Promise.all([this.wallet.loadState(), this.farm.load(), this.friends.load(), this.visit.load()]);
  }

  setBalance(balance) {
    this.balance = balance;
    $("balance").textContent = String(balance);
  }

  /**
   * A newer balance: pushed (another device, a friend, a resume) or in the reply of an op
   * of ours, which the server pushes to our other sockets only. A reply says no delta: the
   * feed shows the change from the balance on the page.
   */
  onWallet({ balance, delta }) {
    const change = delta ?? (this.balance === null ? 0 : balance - this.balance);
    // change 0: the balance as it is, sent after a resume (docs/protocol.md, Pushes)
    this.feed("balance", change === 0 ? `Balance: ${balance} coins` : `${change > 0 ? "+" : ""}${change} coins → ${balance}`);
    this.setBalance(balance);
    if (this.wallet) this.wallet.loadState().then(() => this.wallet.loadLedger()).catch(() => {});
  }

  /** Runs a button's action; a refusal is shown in `errorId`, never thrown. */
  async act(action, errorId) {
    $(errorId).textContent = "";
    $(errorId).classList.remove("error");
    try {
      await action();
    } catch (error) {
      $(errorId).textContent = problem(error);
      $(errorId).classList.add("error");
    }
  }

  onPush(push) {
    if (push.push === "balance") return; // onWallet shows it
    const data = push.data;
    const says = {
      stolen: () => `${data.by} stole ${data.coins} coins from plot ${data.plot + 1}!`,
      watered: () => `${data.by} watered plot ${data.plot + 1}`,
      crop_ripe: () => `Plot ${data.plot + 1} is ripe: harvest it`,
      friend_request: () => (data.status === "friends" ? `${data.from} is now your friend` : `${data.from} wants to be friends`),
      streak_reminder: () => `Sign in today to keep your ${data.streak}-day streak`,
      mall_order: () => Mall.says(data),
      resync: () => "Catching up…",
    }[push.push];
    const text = says ? says() : push.push;
    this.feed(push.push, text);
    if (push.push !== "resync") toast(text, push.push);
    if (push.push === "resync") {
      this.reload().catch(() => {});
    } else if (push.push === "friend_request") {
      this.friends.load().catch(() => {});
    } else if (push.push === "streak_reminder") {
      this.wallet.loadState().catch(() => {});
    } else if (push.push === "mall_order") {
      this.mall.onPush(data);
    } else {
      this.farm.onPush(push);
    }
  }

  feed(kind, text) {
    const list = $("feed");
    list.prepend(el("li", { "data-test": "feed-item", "data-kind": kind }, el("time", {}, clockTime(Date.now())), text));
    while (list.children.length > FEED_MAX) list.lastElementChild.remove();
    if (kind !== "balance" && document.querySelector('[data-view="feed"]').hidden) {
      this.unread += 1;
      $("feed-count").textContent = String(this.unread);
      $("feed-count").hidden = false;
    }
  }

  show(tab) {
    for (const button of document.querySelectorAll(".tabs button")) {
      button.setAttribute("aria-selected", String(button.dataset.tab === tab));
    }
    for (const view of document.querySelectorAll("[data-view]")) view.hidden = view.dataset.view !== tab;
    if (tab === "feed") {
      this.unread = 0;
      $("feed-count").hidden = true;
    }
    if (tab === "friends") this.friends.load().catch(() => {});
    if (tab === "wallet") this.wallet.loadLedger().catch(() => {});
    if (tab === "mall") this.mall.load().catch(() => {});
    if (tab === "draw") this.draw.load().catch(() => {});
  }
}

/** Whether POST /dev/login is on (GET /dev/login says). */
async function devLoginOn() {
  try {
    const answer = await fetch("/dev/login");
    return answer.ok && (await answer.json()).enabled === true;
  } catch {
    return false;
  }
}

async function enter(token) {
  const play = new Play(token);
  try {
    await play.start();
    sessionStorage.setItem(TOKEN_KEY, token);
    window.manor = play; // for people poking at it from the console
    for (const button of document.querySelectorAll(".tabs button")) {
      button.addEventListener("click", () => play.show(button.dataset.tab));
    }
    $("signin").disabled = play.wallet.state.signed_in_today;
    $("refresh").addEventListener("click", () => play.reload().catch(() => {}));
    $("mall-refresh").addEventListener("click", () => play.mall.load().catch(() => {}));
    $("logout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      play.client.close();
      location.reload();
    });
  } catch (error) {
    play.client?.close();
    sessionStorage.removeItem(TOKEN_KEY);
    $("login-error").textContent = `Could not enter: ${problem(error)} (is the token valid and not expired?)`;
  }
}

async function main() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) history.replaceState(null, "", location.pathname); // keep it out of history
  const token = fromHash ?? sessionStorage.getItem(TOKEN_KEY);
  if (token) {
    await enter(token);
    if (!$("main").hidden) return;
  }
  const devLogin = await devLoginOn();
  if (devLogin) {
    const form = $("login-name-form");
    form.hidden = false;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      $("login-error").textContent = "";
      const answer = await fetch("/dev/login", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ player: $("login-name").value.trim() }),
      });
      const body = await answer.json().catch(() => ({}));
      if (answer.status !== 200) {
        $("login-error").textContent = body.error?.message ?? `sign-in refused (${answer.status})`;
        return;
      }
      await enter(body.token);
    });
    $("login-name").focus();
  }
  const tokenForm = $("login-token-form");
  tokenForm.hidden = devLogin;
  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    enter($("login-token").value.trim());
  });
}

main();
