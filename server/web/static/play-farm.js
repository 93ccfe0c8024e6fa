// The farm on /play: my plots (plant, harvest) and a friend's (water, steal), each crop
// with a growth bar that fills on the server's clock and ripens on time without a reload.

import { $, duration, el, seedIcon, seedName, toast } from "./play-ui.js";

// Shown in the seed picker: the seeds of the shipped rules (default.toml and demo.toml).
// The WebSocket API does not list the rules' seeds; a name it does not know answers
// UNKNOWN_SEED, with the list in the message.
export const SEEDS = ["turnip", "pumpkin", "golden_pear"];
const GROW_KEY = "manor.grow_ms";

/**
 * How long each seed grows, learned from my own plantings (the crop has `ripe_at_ms`
 * but not when it was planted): kept per rules version, so a bar is right after a
 * reload too. A crop whose seed was never planted here measures from when it was
 * first seen.
 */
export class GrowTimes {
  constructor(rulesVersion) {
    this.key = `${GROW_KEY}:${rulesVersion}`;
    this.bySeed = JSON.parse(localStorage.getItem(this.key) ?? "{}");
    this.firstSeen = new Map();
  }

  learn(seed, growMs) {
    if (growMs > 0 && this.bySeed[seed] !== growMs) {
      this.bySeed[seed] = growMs;
      localStorage.setItem(this.key, JSON.stringify(this.bySeed));
    }
  }

  /** The share grown, 0..1, of a crop ripe at `ripeAtMs`, at the server's `nowMs`. */
  progress(crop, nowMs, id) {
    const leftMs = crop.ripe_at_ms - nowMs;
    if (leftMs <= 0) return 1;
    let totalMs = crop.planted_at_ms ? crop.ripe_at_ms - crop.planted_at_ms : this.bySeed[crop.seed];
    if (!totalMs) {
      if (!this.firstSeen.has(id)) this.firstSeen.set(id, leftMs);
      totalMs = this.firstSeen.get(id);
    }
    return Math.min(1, Math.max(0, 1 - leftMs / Math.max(totalMs, leftMs)));
  }
}

function bar(test) {
  return el("div", { class: "progress", role: "progressbar", "data-test": test }, el("span"));
}

/**
 * Updates a plot's bar, time and stage from the clock: called every 250 ms.
 * @returns {boolean} whether the crop is ripe now
 */
export function tick(node, crop, nowMs, grow) {
  const ripe = nowMs >= crop.ripe_at_ms;
  const share = grow.progress(crop, nowMs, node.dataset.test);
  node.dataset.stage = ripe ? "ripe" : "growing";
  const fill = node.querySelector(".progress > span");
  fill.style.width = `${Math.round(share * 100)}%`;
  node.querySelector(".progress").setAttribute("aria-valuenow", String(Math.round(share * 100)));
  node.querySelector(".when").textContent = ripe ? "ripe!" : `ripe in ${duration(crop.ripe_at_ms - nowMs)}`;
  return ripe;
}

/** My farm: one card per plot. */
export class Farm {
  constructor(app) {
    this.app = app;
    this.plots = [];
    const select = $("seed");
    select.replaceChildren(...SEEDS.map((seed) => el("option", { value: seed }, seedName(seed))));
  }

  async load() {
    const sentAtMs = Date.now();
    const farm = await this.app.client.ops.farm();
    this.app.clock.observe(farm.now_ms, sentAtMs);
    this.app.setBalance(farm.balance);
    this.plots = farm.plots;
    this.render();
  }

  render() {
    const list = $("plots");
    list.replaceChildren(...this.plots.map((plot) => this.card(plot)));
    this.tick();
  }

  card(plot) {
    const id = `plot-${plot.plot}`;
    if (plot.empty) {
      return el(
        "li",
        { class: "plot", "data-test": id, "data-stage": "empty" },
        el("div", { class: "name" }, `Plot ${plot.plot + 1}`),
        el("div", { class: "sub" }, "empty"),
        el("div", { class: "actions" }, el("button", { "data-test": `${id}-plant`, onclick: () => this.plant(plot.plot) }, "Plant")),
      );
    }
    const stolen = plot.stolen_coins > 0 ? ` · ${plot.stolen_coins} stolen` : "";
    return el(
      "li",
      { class: "plot", "data-test": id, "data-seed": plot.seed },
      el("div", { class: "name" }, seedIcon(plot.seed), seedName(plot.seed)),
      bar(`${id}-bar`),
      el("div", { class: "when", "data-test": `${id}-when` }),
      el("div", { class: "sub", "data-test": `${id}-yield` }, `${plot.yield_coins} coins${stolen}`),
      el("div", { class: "actions" }, el("button", { "data-test": `${id}-harvest`, onclick: () => this.harvest(plot.plot) }, "Harvest")),
    );
  }

  tick() {
    const nowMs = this.app.clock.now();
    for (const plot of this.plots) {
      if (plot.empty) continue;
      const node = document.querySelector(`[data-test="plot-${plot.plot}"]`);
      if (node === null) continue;
      const ripe = tick(node, plot, nowMs, this.app.grow);
      node.querySelector("button").disabled = !ripe;
    }
  }

  async plant(plot) {
    const seed = $("seed").value;
    await this.app.act(async () => {
      const sentAtMs = Date.now();
      const planted = await this.app.client.ops.plant({ plot, seed });
      this.app.grow.learn(seed, Math.round(planted.crop.ripe_at_ms - this.app.clock.now() + (Date.now() - sentAtMs) / 2));
      this.plots[plot] = { plot, ...planted.crop };
      this.render();
      toast(`Planted ${seedName(seed)} on plot ${plot + 1}`);
    }, "farm-error");
  }

  async harvest(plot) {
    await this.app.act(async () => {
      const harvested = await this.app.client.ops.harvest({ plot });
      this.plots[plot] = { plot, empty: true };
      this.render();
      toast(`Harvested ${harvested.coins} coins`, "balance");
    }, "farm-error");
  }

  /** A push about my crops: change what it says at once, then reload the farm. */
  onPush(push) {
    const plot = this.plots[push.data.plot];
    if (push.push === "watered" && plot && !plot.empty) plot.ripe_at_ms = push.data.ripe_at_ms;
    if (push.push === "stolen" && plot && !plot.empty) plot.stolen_coins += push.data.coins;
    this.render();
    this.load().catch(() => {});
  }
}

/** A friend's farm: water growing crops, steal from ripe ones. */
export class Visit {
  constructor(app) {
    this.app = app;
    this.player = null;
    this.plots = [];
    $("visit-close").addEventListener("click", () => this.close());
  }

  async open(player) {
    this.player = player;
    $("visit-player").textContent = player;
    $("visit-result").textContent = "";
    $("visit").hidden = false;
    await this.load();
    $("visit").scrollIntoView({ block: "nearest" });
  }

  close() {
    this.player = null;
    $("visit").hidden = true;
  }

  async load() {
    if (this.player !== null) await this.app.act(() => this.read(), "visit-result");
  }

  async read() {
    const sentAtMs = Date.now();
    const visit = await this.app.client.ops.visit({ player: this.player });
    this.app.clock.observe(visit.now_ms, sentAtMs);
    this.plots = visit.plots;
    $("visit-plots").replaceChildren(...this.plots.map((plot) => this.card(plot)));
    this.tick();
  }

  card(plot) {
    const id = `visit-plot-${plot.plot}`;
    if (plot.empty) {
      return el("li", { class: "plot", "data-test": id, "data-stage": "empty" }, el("div", { class: "name" }, `Plot ${plot.plot + 1}`), el("div", { class: "sub" }, "empty"));
    }
    return el(
      "li",
      { class: "plot", "data-test": id, "data-seed": plot.seed },
      el("div", { class: "name" }, seedIcon(plot.seed), seedName(plot.seed)),
      bar(`${id}-bar`),
      el("div", { class: "when", "data-test": `${id}-when` }),
      el(
        "div",
        { class: "actions" },
        el("button", { class: "water", "data-test": `${id}-water`, disabled: !plot.can_water, onclick: () => this.water(plot.plot) }, "Water"),
        el("button", { class: "steal", "data-test": `${id}-steal`, disabled: !plot.can_steal, onclick: () => this.steal(plot.plot) }, "Steal"),
      ),
    );
  }

  tick() {
    const nowMs = this.app.clock.now();
    for (const plot of this.plots) {
      if (plot.empty) continue;
      const node = document.querySelector(`[data-test="visit-plot-${plot.plot}"]`);
      if (node !== null) tick(node, plot, nowMs, this.app.grow);
    }
  }

  async water(plot) {
    await this.app.act(async () => {
      const watered = await this.app.client.ops.water({ player: this.player, plot });
      await Promise.all([this.read(), this.app.friends.load()]);
      $("visit-result").textContent = `Watered: ripe ${duration(watered.advanced_ms)} sooner, +${watered.coins} coins`;
    }, "visit-result");
  }

  async steal(plot) {
    await this.app.act(async () => {
      const stolen = await this.app.client.ops.steal({ player: this.player, plot });
      await Promise.all([this.read(), this.app.friends.load()]);
      $("visit-result").textContent = `You took ${stolen.coins} coins`;
    }, "visit-result");
  }
}
