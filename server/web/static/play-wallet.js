// The sign-in card and the wallet on /play: streak and the week's rewards, the balance by
// expiry batch, and the ledger history a page at a time.

import { $, el, when } from "./play-ui.js";

const WEEK_DAYS = 7;
const LEDGER_PAGE = 20;
// What a transfer id's first part means (docs/ledger.md names them).
const KINDS = {
  signin: "Daily sign-in",
  harvest: "Harvest",
  water: "Watered a friend's crop",
  steal: "Stole from a friend",
  grant: "Granted by support",
  reverse: "Correction",
  reversal: "Correction",
  redeem: "Paid at checkout",
  h: "Held for checkout",
  order: "Order reward",
  review: "Review reward",
  refund: "Refund",
  hold: "Checkout",
  expire: "Expired",
  expiry: "Expired",
  exchange: "Points exchange",
};

/** A journal entry in words: its kind, and the friend for waterings and thefts. */
export function describe(entry) {
  const parts = entry.transfer_id.split(":");
  const kind = KINDS[parts[0]] ?? parts[0];
  if (parts[0] === "steal" || parts[0] === "water") return `${kind} (${parts[1]})`;
  return kind;
}

export class Wallet {
  constructor(app) {
    this.app = app;
    this.state = null;
    this.nextBeforeSeq = null;
    this.signIns = []; // this cycle's sign-in coins, oldest first, from the journal
    $("ledger-more").addEventListener("click", () => this.more());
    $("signin").addEventListener("click", () => this.signIn());
  }

  async loadState() {
    this.state = await this.app.client.ops.state();
    this.app.setBalance(this.state.balance);
    this.renderSignIn();
    this.renderBatches();
    return this.state;
  }

  renderSignIn() {
    const state = this.state;
    $("streak").textContent = String(state.streak);
    $("today").textContent = state.day;
    const signin = $("signin");
    signin.disabled = state.signed_in_today;
    signin.textContent = state.signed_in_today ? "Signed in today ✓" : `Sign in: +${state.next_sign_in_coins} coins`;
    // The day of the weekly cycle that today is (signed) or will be (not yet).
    const done = state.streak === 0 ? 0 : ((state.streak - 1) % WEEK_DAYS) + 1;
    const doneInCycle = state.signed_in_today ? done : state.streak % WEEK_DAYS;
    const rewards = state.sign_in_rewards; // when the server lists them
    const days = [];
    for (let day = 1; day <= WEEK_DAYS; day += 1) {
      let coins = Array.isArray(rewards) ? rewards[(day - 1) % rewards.length] : undefined;
      if (coins === undefined && day <= doneInCycle) coins = this.signIns[this.signIns.length - doneInCycle + day - 1];
      if (coins === undefined && day === doneInCycle + 1) coins = state.next_sign_in_coins;
      const cls = day <= doneInCycle ? "done" : day === doneInCycle + 1 ? "next" : "";
      days.push(el("li", { class: cls, "data-test": `week-day-${day}` }, `Day ${day}`, el("b", {}, coins ?? "·")));
    }
    $("week").replaceChildren(...days);
  }

  async signIn() {
    await this.app.act(async () => {
      const signed = await this.app.client.ops.sign_in();
      $("signin-result").textContent = signed.already
        ? "You signed in today already."
        : `+${signed.coins} coins · day ${signed.streak} of your streak`;
      this.signIns.push(signed.coins);
      await this.loadState();
      await this.loadLedger();
    }, "signin-result");
  }

  renderBatches() {
    const rows = this.state.batches.map((batch) =>
      el("tr", { "data-test": "batch" }, el("td", {}, batch.expires), el("td", { class: "num" }, batch.coins)),
    );
    if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 2, class: "note" }, "No coins yet")));
    $("batches").tBodies[0].replaceChildren(...rows);
  }

  async loadLedger() {
    const page = await this.app.client.ops.ledger({ limit: LEDGER_PAGE });
    $("ledger").tBodies[0].replaceChildren();
    this.append(page);
    // The sign-ins of the current streak's week, for the week strip.
    this.signIns = page.entries.filter((e) => e.transfer_id.startsWith("signin:")).map((e) => e.amount).reverse();
    if (this.state !== null) this.renderSignIn();
  }

  async more() {
    if (this.nextBeforeSeq === null) return;
    await this.app.act(async () => {
      this.append(await this.app.client.ops.ledger({ limit: LEDGER_PAGE, before_seq: this.nextBeforeSeq }));
    }, "signin-result");
  }

  append(page) {
    const body = $("ledger").tBodies[0];
    for (const entry of page.entries) {
      const sign = entry.amount > 0 ? "plus" : "minus";
      body.append(
        el(
          "tr",
          { "data-test": "ledger-row", "data-transfer-id": entry.transfer_id },
          el("td", {}, when(entry.ts_ms)),
          el("td", {}, describe(entry)),
          el("td", { class: `num ${sign}` }, entry.amount > 0 ? `+${entry.amount}` : entry.amount),
          el("td", { class: "num" }, entry.balance_after),
        ),
      );
    }
    if (body.children.length === 0) body.append(el("tr", {}, el("td", { colspan: 4, class: "note" }, "Nothing yet")));
    this.nextBeforeSeq = page.next_before_seq;
    $("ledger-more").hidden = page.next_before_seq === null;
  }
}
