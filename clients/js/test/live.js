// Helpers of the live tests: clients of the run's server, recorded pushes, friendships.

import WebSocket from "ws";

import { ManorClient } from "../src/index.js";
import { mintToken, uniquePlayer } from "./server.js";

/** @typedef {import("../src/client.js").ClientOptions} ClientOptions */
/** @typedef {import("../src/emitter.js").AnyPush} AnyPush */

/**
 * Opens clients for players of unique names and closes them all at the end.
 * @param {{ url: string, secret: string }} server
 */
export function players(server) {
  /** @type {ManorClient[]} */
  const opened = [];
  return {
    /**
     * @param {string} player
     * @param {Partial<ClientOptions>} [options]
     * @param {(client: ManorClient) => void} [before] runs before the socket opens
     */
    async open(player, options = {}, before = (/** @type {ManorClient} */ _client) => {}) {
      const client = new ManorClient(server.url, {
        token: mintToken(server.secret, player),
        WebSocket: /** @type {any} */ (WebSocket),
        ...options,
      });
      opened.push(client);
      before(client); // listeners for what arrives with the socket (a replay, a resync)
      await client.open();
      return client;
    },
    /** @param {string} name */
    name: (name) => uniquePlayer(name),
    closeAll() {
      for (const client of opened.splice(0)) client.close();
    },
  };
}

/**
 * Every push the client delivers, in delivery order.
 * @param {ManorClient} client
 * @returns {AnyPush[]}
 */
export function record(client) {
  /** @type {AnyPush[]} */
  const pushes = [];
  client.on("push", (push) => pushes.push(push));
  return pushes;
}

/**
 * Waits until `check` returns something other than undefined/false.
 * @template T
 * @param {() => T} check
 * @param {string} what
 * @param {number} [timeoutMs]
 * @returns {Promise<Exclude<T, undefined | false>>}
 */
export async function until(check, what, timeoutMs = 8_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return /** @type {any} */ (value);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 20));
  }
}

/**
 * Makes two players friends through the ops a person would use.
 * @param {ManorClient} a
 * @param {ManorClient} b
 * @param {string} aName
 * @param {string} bName
 */
export async function befriend(a, b, aName, bName) {
  await a.ops.friend_request({ player: bName });
  const accepted = await b.ops.friend_accept({ player: aName });
  if (accepted.status !== "friends") throw new Error(`not friends: ${accepted.status}`);
}
