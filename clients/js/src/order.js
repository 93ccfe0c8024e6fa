// Push ordering, with no I/O: the server numbers each player's pushes 1, 2, 3... and,
// around a resume, may send one twice (live and replayed) or a newer live push before
// the replayed older ones (docs/protocol.md, "Resuming after a reconnect"). PushOrder
// turns what arrives into each seq once, ascending: duplicates are dropped and a push
// past a gap waits until the gap fills, or until the caller gives up on it (flush).
// A state push (`balance`, seq 0, with data.entry_seq) is outside the sequence: it is
// never replayed, a resume sends the value as it then is, so it goes out at once unless a
// newer one (a higher data.entry_seq) already did. (A `balance` push of before, still in
// an inbox, has a seq and no entry_seq: it is sequenced like the others.)

/**
 * @typedef {{ push: string, seq: number, data: any }} PushFrame
 */

export const PUSHES_WAITING_MAX = 256;

export class PushOrder {
  /**
   * @param {number | null} cursor the seq of the last push processed; null: unknown
   *   (the first push seen is taken as it comes)
   * @param {number} waitingMax how many pushes may wait behind a gap before flushing
   */
  constructor(cursor = null, waitingMax = PUSHES_WAITING_MAX) {
    /** @type {number | null} */
    this.cursor = cursor;
    this.waitingMax = waitingMax;
    /** @type {Map<number, PushFrame>} */
    this.waiting = new Map();
    /** @type {Map<string, number>} the newest entry_seq of each state push delivered */
    this.states = new Map();
  }

  /**
   * A state the app already holds, as a result gave it (`state`'s balance, or the balance
   * of an op that moved coins, with its entry_seq): an older state push is dropped.
   * @param {string} kind
   * @param {number} entrySeq
   * @returns {boolean} whether it is newer than what the app held
   */
  held(kind, entrySeq) {
    if (entrySeq <= (this.states.get(kind) ?? -1)) return false;
    this.states.set(kind, entrySeq);
    return true;
  }

  /**
   * The entry_seq of the newest state of `kind` the app holds, or null: a reconnect names
   * the balance's, and the server then sends no balance at or below it.
   * @param {string} kind
   * @returns {number | null}
   */
  heldState(kind) {
    return this.states.get(kind) ?? null;
  }

  /** True while pushes wait behind a gap. */
  get blocked() {
    return this.waiting.size > 0;
  }

  /**
   * One push as it arrived; returns the pushes now deliverable, in order.
   * @param {PushFrame} push
   * @returns {PushFrame[]}
   */
  accept(push) {
    const entrySeq = push.data?.entry_seq;
    if (push.push === "balance" && typeof entrySeq === "number") {
      if (entrySeq <= (this.states.get(push.push) ?? -1)) return [];
      this.states.set(push.push, entrySeq);
      return [push];
    }
    if (push.push === "resync") {
      // The server's latest seq: the cursor, even when lower than ours. What waited
      // behind a gap is older than a snapshot the app is about to take, or newer: keep
      // only the newer.
      this.cursor = push.seq;
      for (const seq of [...this.waiting.keys()]) {
        if (seq <= push.seq) this.waiting.delete(seq);
      }
      return [push, ...this.#drain()];
    }
    if (this.cursor === null) {
      this.cursor = push.seq;
      return [push];
    }
    if (push.seq <= this.cursor || this.waiting.has(push.seq)) return [];
    if (push.seq === this.cursor + 1) {
      this.cursor = push.seq;
      return [push, ...this.#drain()];
    }
    this.waiting.set(push.seq, push);
    return this.waiting.size > this.waitingMax ? this.flush() : [];
  }

  /**
   * Gives up on the gap: every waiting push, ascending; the cursor moves to the last.
   * @returns {PushFrame[]}
   */
  flush() {
    const out = [...this.waiting.values()].sort((a, b) => a.seq - b.seq);
    this.waiting.clear();
    const last = out.at(-1);
    if (last !== undefined) this.cursor = last.seq;
    return out;
  }

  /** @returns {PushFrame[]} */
  #drain() {
    const out = [];
    for (;;) {
      const next = this.cursor === null ? undefined : this.waiting.get(this.cursor + 1);
      if (next === undefined) return out;
      this.waiting.delete(next.seq);
      this.cursor = next.seq;
      out.push(next);
    }
  }
}
