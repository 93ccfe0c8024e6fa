// Friends on /play: the list with who can be stolen from or watered now, requests
// (add by player id, accept, decline), and the way into a friend's farm.

import { $, duration, el, toast } from "./play-ui.js";

export class Friends {
  constructor(app) {
    this.app = app;
    this.view = null;
    $("friend-add-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.add($("friend-add-name").value.trim());
    });
  }

  async load() {
    this.view = await this.app.client.ops.friends();
    this.render();
  }

  render() {
    const view = this.view;
    if (view === null) return;
    const nowMs = this.app.clock.now();
    $("incoming").replaceChildren(
      ...view.incoming.map((player) =>
        el(
          "li",
          { "data-test": `incoming-${player}` },
          el("span", { class: "name" }, `${player} wants to be friends`),
          el("button", { class: "primary", "data-test": `accept-${player}`, onclick: () => this.edge("friend_accept", player) }, "Accept"),
          el("button", { "data-test": `decline-${player}`, onclick: () => this.edge("friend_decline", player) }, "Decline"),
        ),
      ),
    );
    const rows = view.friends.map((friend) => {
      const next = friend.next_ripe_at_ms === null ? null : friend.next_ripe_at_ms - nowMs;
      return el(
        "li",
        { "data-test": `friend-${friend.player}`, "data-can-steal": friend.can_steal, "data-can-water": friend.can_water },
        el("span", { class: "name" }, friend.player),
        friend.can_steal && el("span", { class: "tag steal", "data-test": `friend-${friend.player}-can-steal` }, "can steal"),
        friend.can_water && el("span", { class: "tag water", "data-test": `friend-${friend.player}-can-water` }, "can water"),
        !friend.can_steal && next !== null && next > 0 && el("span", { class: "tag" }, `ripe in ${duration(next)}`),
        el("button", { "data-test": `visit-${friend.player}`, onclick: () => this.app.visit.open(friend.player) }, "Visit"),
      );
    });
    if (rows.length === 0) rows.push(el("li", { class: "note" }, "No friends yet: add one by their player id."));
    $("friend-list").replaceChildren(...rows);
    $("outgoing").textContent = view.outgoing.length ? `Waiting for: ${view.outgoing.join(", ")}` : "";
  }

  async add(player) {
    if (!player) return;
    await this.edge("friend_request", player);
    $("friend-add-name").value = "";
  }

  async edge(op, player) {
    await this.app.act(async () => {
      const result = await this.app.client.call(op, { player });
      const says = {
        friends: `You and ${player} are friends`,
        outgoing: `Asked ${player}`,
        incoming: `${player} asked you`,
        blocked: `Blocked ${player}`,
      }[result.status] ?? `No link with ${player}`;
      $("friend-result").textContent = says;
      if (result.status === "friends") toast(says);
      await this.load();
    }, "friend-result");
  }
}
