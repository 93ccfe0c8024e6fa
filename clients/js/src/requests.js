// Requests waiting for their replies, across sockets. Each has an id unique per player;
// it is sent on the current socket, and again (same id) on the next one if its socket
// dropped first. Replies come one per request frame, in order, so a reply without an id
// (RATE_LIMITED, FRAME_TOO_LARGE) belongs to the oldest request sent on this socket.

/** Errors that mean "send the same request again, with the same id, after a pause". */
export const RETRYABLE = new Set(["BUSY", "STORE_UNAVAILABLE", "INTERNAL", "RATE_LIMITED"]);

export class ManorError extends Error {
  /**
   * @param {string} code a stable code from docs/protocol.md, or one of the client's:
   *   TIMEOUT, CLOSED, CONNECT_FAILED
   * @param {string} message
   * @param {string | number | null} [requestId]
   */
  constructor(code, message, requestId = null) {
    super(`${code}: ${message}`);
    this.name = "ManorError";
    this.code = code;
    this.requestId = requestId;
  }
}

/**
 * @typedef {object} Pending
 * @property {string | number} id
 * @property {string} op
 * @property {unknown} frame
 * @property {(result: any) => void} resolve
 * @property {(error: ManorError) => void} reject
 * @property {ReturnType<typeof setTimeout>} timer
 * @property {number} attempts
 * @property {number | null} sentOn the socket generation it was last sent on
 *
 * What the requests need of the connection.
 * @typedef {object} Wire
 * @property {() => number | null} generation the open socket's, or null when none is open
 * @property {(frame: unknown) => void} send sends on the open socket
 * @property {(attempt: number) => number} backoffMs
 * @property {(op: string, result: any) => void} answered sees every successful result
 */

export class Requests {
  /**
   * @param {Wire} wire
   * @param {{ resent: number, retried: number }} stats counters to add to
   * @param {number} retriesMax
   */
  constructor(wire, stats, retriesMax) {
    this.wire = wire;
    this.stats = stats;
    this.retriesMax = retriesMax;
    /** @type {Map<string | number, Pending>} */
    this.pending = new Map();
    /** @type {(string | number)[]} ids sent on the current socket, in order */
    this.inFlight = [];
  }

  /**
   * @param {string | number} id
   * @param {string} op
   * @param {unknown} frame the encoded request
   * @param {number} timeoutMs
   * @returns {Promise<any>}
   */
  add(id, op, frame, timeoutMs) {
    if (this.pending.has(id)) {
      return Promise.reject(new ManorError("BAD_REQUEST", `request ${id} is already waiting`, id));
    }
    return new Promise((resolve, reject) => {
      /** @type {Pending} */
      const entry = {
        id,
        op,
        frame,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.pending.delete(id);
          reject(new ManorError("TIMEOUT", `${op}: no answer in ${timeoutMs} ms`, id));
        }, timeoutMs),
        attempts: 0,
        sentOn: null,
      };
      this.pending.set(id, entry);
      this.#send(entry);
    });
  }

  /** A new socket is open: send what waits, in the order it was asked. */
  opened() {
    this.inFlight = [];
    for (const entry of this.pending.values()) this.#send(entry);
  }

  /** The socket is gone: what it was sent is unanswered, to be sent again. */
  dropped() {
    this.inFlight = [];
  }

  /** @param {ManorError} error */
  failAll(error) {
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(new ManorError(error.code, error.message, entry.id));
    }
    this.pending.clear();
    this.inFlight = [];
  }

  /**
   * A reply frame; false if no waiting request is its.
   * @param {Record<string, any>} reply
   */
  answer(reply) {
    let id = reply.id;
    if (id === null || id === undefined) {
      id = this.inFlight.shift();
    } else {
      const at = this.inFlight.indexOf(id);
      if (at >= 0) this.inFlight.splice(at, 1);
    }
    const entry = id === undefined ? undefined : this.pending.get(id);
    if (entry === undefined) return false;
    if (reply.ok) {
      this.#finish(entry);
      this.wire.answered(entry.op, reply.result);
      entry.resolve(reply.result);
      return true;
    }
    const code = String(reply.error?.code ?? "BAD_REPLY");
    if (RETRYABLE.has(code) && entry.attempts < this.retriesMax) {
      entry.attempts += 1;
      this.stats.retried += 1;
      entry.sentOn = null;
      setTimeout(() => {
        if (this.pending.get(entry.id) === entry) this.#send(entry);
      }, this.wire.backoffMs(entry.attempts - 1));
      return true;
    }
    this.#finish(entry);
    entry.reject(new ManorError(code, String(reply.error?.message ?? ""), entry.id));
    return true;
  }

  /** @param {Pending} entry */
  #finish(entry) {
    this.pending.delete(entry.id);
    clearTimeout(entry.timer);
  }

  /** @param {Pending} entry */
  #send(entry) {
    const generation = this.wire.generation();
    if (generation === null || entry.sentOn === generation) return;
    if (entry.sentOn !== null) this.stats.resent += 1;
    entry.sentOn = generation;
    this.inFlight.push(entry.id);
    this.wire.send(entry.frame);
  }
}
