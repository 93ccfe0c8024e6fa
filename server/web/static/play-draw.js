// The lucky draw on /play: the pool (`draw_pool`: cost, prizes with weights and stock,
// the period's seed hash, the player's nonce, client seed and misses toward the
// guarantee), the client seed (`draw_seed`), a draw (`draw`) with everything needed to
// check it, and the seeds of past periods (`draw_seeds`), checked here against their
// hashes and against this page's draws (docs/points-center.md, "The algorithm").

import { $, el, when } from "./play-ui.js";
import { RequestIds, pointsProblem } from "./play-mall.js";

const SEEDS_SHOWN = 7;
const MINE_MAX = 50; // this page's draws, kept to check once their period's seed is out
const CLIENT_SEED = /^[A-Za-z0-9_-]{1,64}$/;

const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");

/** WebCrypto exists only in secure contexts (https, localhost): else nothing is checked here. */
const subtle = globalThis.crypto?.subtle ?? null;

async function sha256Hex(text) {
  return hex(await subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** The draw's number from the revealed seed (points-center.md, steps 2 and 3). */
async function drawNumber(seed, player, clientSeed, nonce, total) {
  const key = await subtle.importKey("raw", new TextEncoder().encode(seed), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const limit = 2 ** 32 - (2 ** 32 % total);
  for (let round = 0; round < 16; round += 1) {
    const message = `${player}:${clientSeed}:${nonce}${round ? `:${round}` : ""}`;
    const digest = new DataView(await subtle.sign("HMAC", key, new TextEncoder().encode(message)));
    for (let i = 0; i < 32; i += 4) {
      const v = digest.getUint32(i, false);
      if (v < limit) return v % total;
    }
  }
  return null;
}

const prizeText = (prize) =>
  prize.kind === "coins" ? `${prize.coins} coins` : prize.kind === "none" ? "nothing this time" : `${prize.name.replace(/_/g, " ")} (${prize.kind})`;

export class Draw {
  constructor(app) {
    this.app = app;
    this.pool = null; // null: the rules' first pool
    this.view = null;
    this.ids = new RequestIds("draw");
    this.seedIds = new RequestIds("seed");
    this.mine = []; // this page's draw replies, newest first
    $("draw-button").addEventListener("click", () => this.draw());
    $("draw-seed-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.setSeed($("draw-client-seed").value.trim());
    });
    $("draw-pool").addEventListener("change", () => {
      this.pool = $("draw-pool").value;
      this.load().catch(() => {});
    });
  }

  args() {
    return this.pool === null ? {} : { pool: this.pool };
  }

  async load() {
    const [pool, seeds] = await Promise.all([
      this.app.client.ops.draw_pool(this.args()),
      this.app.client.ops.draw_seeds({ ...this.args(), limit: SEEDS_SHOWN }),
    ]);
    this.view = pool;
    this.pool = pool.pool;
    this.render();
    await this.renderSeeds(seeds);
  }

  render() {
    const view = this.view;
    $("draw-pool").replaceChildren(...view.pools.map((name) => el("option", { value: name, selected: name === view.pool }, name)));
    $("draw-pool").hidden = view.pools.length < 2;
    $("draw-cost").textContent = String(view.cost_coins);
    $("draw-period").textContent = `${view.period.id} (until ${when(view.period.end_ms)})`;
    $("draw-seed-hash").textContent = view.seed_hash;
    $("draw-today").textContent = `${view.draws_today} of ${view.draws_per_day_max}`;
    $("draw-nonce").textContent = String(view.nonce);
    $("draw-client-seed-used").textContent = view.client_seed === null ? `${view.client_seed_used} (not set yet)` : view.client_seed;
    $("draw-misses").textContent =
      view.pity_misses > 0
        ? `${view.misses} of ${view.pity_misses} draws without ${view.pity_prize}: it is guaranteed after ${view.pity_misses}`
        : `${view.misses}`;
    const rows = view.prizes.map((prize) =>
      el(
        "tr",
        { "data-test": `draw-prize-${prize.name}` },
        el("td", {}, prize.name.replace(/_/g, " "), el("div", { class: "sub" }, prize.kind === "coins" ? `${prize.coins} coins` : prize.kind)),
        el("td", { class: "num" }, prize.weight),
        el("td", { class: "num" }, `${((100 * prize.weight) / view.total_weight).toFixed(2)} %`),
        el("td", { class: "num" }, prize.stock_left === null ? "∞" : `${prize.stock_left}/${prize.stock}`),
      ),
    );
    $("draw-prizes").tBodies[0].replaceChildren(...rows);
    const full = view.draws_today >= view.draws_per_day_max;
    const button = $("draw-button");
    button.disabled = full;
    button.textContent = full ? "No draws left today" : `Draw for ${view.cost_coins} coins`;
  }

  async setSeed(clientSeed) {
    if (!CLIENT_SEED.test(clientSeed)) {
      $("draw-seed-result").textContent = "1 to 64 letters, digits, _ or -";
      $("draw-seed-result").className = "error";
      return;
    }
    await this.app.act(async () => {
      const id = this.seedIds.take(clientSeed);
      try {
        await this.app.client.call("draw_seed", { client_seed: clientSeed }, { id });
        this.seedIds.settle(clientSeed);
      } catch (error) {
        this.seedIds.settle(clientSeed, error);
        throw error;
      }
      $("draw-seed-result").textContent = `Your next draws use the client seed ${clientSeed}`;
      await this.load();
    }, "draw-seed-result");
  }

  async draw() {
    const key = `${this.pool}:${this.view?.nonce}`;
    const id = this.ids.take(key);
    const button = $("draw-button");
    button.disabled = true;
    $("draw-error").textContent = "";
    try {
      const drawn = await this.app.client.call("draw", this.args(), { id });
      this.ids.settle(key);
      this.app.setBalance(drawn.balance);
      this.mine.unshift(drawn);
      this.mine.length = Math.min(this.mine.length, MINE_MAX);
      this.showResult(drawn);
    } catch (error) {
      this.ids.settle(key, error);
      $("draw-error").textContent = pointsProblem(error);
    } finally {
      await this.load().catch(() => {});
    }
  }

  showResult(d) {
    const box = $("draw-result");
    const facts = [
      ["Seed hash (commitment)", d.seed_hash, "draw-result-seed-hash"],
      ["Period", d.period.id],
      ["Player", d.player],
      ["Client seed", d.client_seed],
      ["Nonce", d.nonce, "draw-result-nonce"],
      ["Message", `${d.player}:${d.client_seed}:${d.nonce}${d.round ? `:${d.round}` : ""}`],
      ["HMAC-SHA256 digest", d.digest, "draw-result-digest"],
      ["Round, integer", `${d.round}, ${d.chunk}`],
      ["Number", `${d.number} of ${d.total_weight}`, "draw-result-number"],
      ["Drawn", `${d.drawn}${d.forced ? " (guarantee)" : ""}${d.sold_out ? ` (sold out: ${d.prize.name} instead)` : ""}`],
      ["Misses", `${d.misses_before} → ${d.misses}`],
    ];
    box.replaceChildren(
      el("p", { class: "prize", "data-test": "draw-result-prize", "data-prize": d.prize.name }, `You got ${prizeText(d.prize)}`),
      el("p", { class: "sub" }, `−${d.cost_coins} coins${d.prize.coins ? `, +${d.prize.coins} coins` : ""} · balance ${d.balance}`),
      el(
        "dl",
        { class: "facts" },
        facts.flatMap(([name, value, test]) => [el("dt", {}, name), el("dd", { class: "mono", "data-test": test }, value)]),
      ),
      el(
        "p",
        { class: "note" },
        "To check it once the period's seed is out (below): SHA-256 of the seed must be the hash, " +
          "and HMAC-SHA256(seed, message) must give the number (docs/points-center.md).",
      ),
    );
    box.hidden = false;
  }

  async renderSeeds(seeds) {
    const items = [];
    for (const period of seeds.periods) {
      const checks = [];
      if (period.revealed && subtle !== null) {
        const ok = (await sha256Hex(period.seed)) === period.seed_hash;
        checks.push(el("span", { class: `tag ${ok ? "ok" : "bad"}`, "data-test": `draw-seed-check-${period.id}` }, ok ? "hash ✓" : "hash ✗"));
        const total = period.table?.total_weight ?? period.table?.prizes?.reduce((sum, p) => sum + p.weight, 0);
        for (const d of this.mine.filter((m) => m.period.id === period.id && m.pool === seeds.pool)) {
          const number = total ? await drawNumber(period.seed, d.player, d.client_seed, d.nonce, total) : null;
          const same = number === d.number;
          checks.push(el("span", { class: `tag ${same ? "ok" : "bad"}`, "data-test": `draw-check-${d.nonce}` }, `draw #${d.nonce} ${same ? "✓" : "✗"}`));
        }
      }
      items.push(
        el(
          "li",
          { "data-test": `draw-period-${period.id}`, "data-revealed": String(period.revealed) },
          el("span", { class: "name" }, period.id),
          ...checks,
          el("div", { class: "mono" }, `hash ${period.seed_hash}`),
          el(
            "div",
            { class: "mono", "data-test": `draw-seed-${period.id}` },
            period.revealed ? `seed ${period.seed}` : `seed shown after ${when(period.end_ms + 60_000)}`,
          ),
        ),
      );
    }
    if (items.length === 0) items.push(el("li", { class: "note" }, "No periods yet."));
    $("draw-seeds").replaceChildren(...items);
  }
}
