// A small typed event emitter (the same in browsers and Node): on() returns its undo.

/** @typedef {import("./ops.js").PushMap} PushMap */
/** @typedef {import("./ops.js").PushName} PushName */

/**
 * @template {PushName} K
 * @typedef {{ push: K, seq: number, data: PushMap[K] }} Push
 */
/** @typedef {{ [K in PushName]: Push<K> }[PushName]} AnyPush */

/**
 * The client's events and their listeners' arguments. Each push type is an event of its
 * own name (`stolen`, `balance`, ...) with (data, push); `push` gets every push. `wallet`
 * comes once for each balance newer than the app had, whichever way it came: a `balance`
 * push (another socket's commit, a resume; `delta` set) or the result of an op of this
 * client's that moved coins (the server pushes that one to its other sockets only;
 * `delta` null).
 * @typedef {{ [K in PushName]: [data: PushMap[K], push: Push<K>] } & {
 *   push: [push: AnyPush],
 *   open: [info: { resumed: boolean, sinceSeq: number | null, entrySeq: number | null }],
 *   close: [info: { code: number, reason: string }],
 *   status: [status: import("./client.js").Status],
 *   gap: [info: { seq: number }],
 *   unmatched: [message: unknown],
 *   wallet: [info: { balance: number, entry_seq: number, delta: number | null }],
 * }} ClientEvents
 */

/**
 * @template {Record<string, any[]>} E
 */
export class Emitter {
  constructor() {
    /** @type {Map<keyof E, Set<(...args: any[]) => void>>} */
    this.listeners = new Map();
  }

  /**
   * @template {keyof E} K
   * @param {K} name
   * @param {(...args: E[K]) => void} listener
   * @returns {() => void} removes the listener
   */
  on(name, listener) {
    let set = this.listeners.get(name);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(name, set);
    }
    set.add(/** @type {(...args: any[]) => void} */ (listener));
    return () => set.delete(/** @type {(...args: any[]) => void} */ (listener));
  }

  /**
   * @template {keyof E} K
   * @param {K} name
   * @param {E[K]} args
   */
  emit(name, ...args) {
    for (const listener of this.listeners.get(name) ?? []) {
      try {
        listener(...args);
      } catch (error) {
        // One broken listener must not stop the others, nor the client's reading loop.
        console.error(`coin-manor client: a "${String(name)}" listener threw`, error);
      }
    }
  }
}
