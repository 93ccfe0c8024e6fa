// ManorClient: one logical connection to /v1/ws that survives reconnects. Requests get
// ids unique per player (a random session per client plus a counter); a request not
// answered when its socket drops is sent again, with the same id, on the next socket, so
// the server answers it from its stored reply and coins move once. Pushes are resumed
// with since_seq and delivered once each, in seq order; a `balance` push, a state push,
// is delivered unless a newer balance was (see order.js), and a reconnect names the
// balance it holds (entry_seq) so the resume sends it only when it moved.

import { decodeFrame, jsonCodec, SUBPROTOCOL_MSGPACK } from "./codec.js";
import { Emitter } from "./emitter.js";
import { OP_NAMES } from "./ops.js";
import { PushOrder } from "./order.js";
import { ManorError, Requests } from "./requests.js";

/** @typedef {import("./ops.js").OpMap} OpMap */
/** @typedef {import("./ops.js").OpName} OpName */
/** @typedef {import("./ops.js").PushMap} PushMap */
/** @typedef {import("./ops.js").PushName} PushName */
/** @typedef {import("./codec.js").Codec} Codec */
/** @typedef {import("./order.js").PushFrame} PushFrame */
/** @typedef {import("./emitter.js").ClientEvents} ClientEvents */

/**
 * @template {string} K
 * @typedef {K extends OpName ? OpMap[K]["args"] : Record<string, unknown>} ArgsOf
 */
/**
 * @template {string} K
 * @typedef {K extends OpName ? OpMap[K]["result"] : any} ResultOf
 */
/**
 * One typed method per op: `client.ops.plant({ plot: 0, seed: "turnip" })`.
 * @typedef {{ [K in OpName]: (args?: OpMap[K]["args"], options?: CallOptions) =>
 *   Promise<OpMap[K]["result"]> }} OpWrappers
 */

/**
 * The part of the WebSocket API the client uses: the browser's WebSocket, Node's, or the
 * `ws` package's.
 * @typedef {{
 *   readonly readyState: number,
 *   binaryType: string,
 *   send(data: string | Uint8Array): void,
 *   close(code?: number, reason?: string): void,
 *   onopen: ((event: any) => void) | null,
 *   onmessage: ((event: any) => void) | null,
 *   onclose: ((event: any) => void) | null,
 *   onerror: ((event: any) => void) | null,
 * }} SocketLike
 * @typedef {new (url: string, protocols: string[]) => SocketLike} SocketConstructor
 */

/**
 * @typedef {object} ClientOptions
 * @property {string | (() => string | Promise<string>)} token the player's JWT, or a
 *   function that returns a fresh one before each connect
 * @property {Codec} [codec] default: JSON; pass a msgpack codec for binary frames
 * @property {SocketConstructor} [WebSocket] default: globalThis.WebSocket
 * @property {number | null} [sinceSeq] the seq of the last push the app processed
 * @property {number} [timeoutMs] a request's time to answer, retries included (15 000)
 * @property {number} [retriesMax] resends of a BUSY / STORE_UNAVAILABLE / INTERNAL /
 *   RATE_LIMITED answer, with the same id (4)
 * @property {number} [backoffMs] the first pause before a reconnect or resend (250)
 * @property {number} [backoffMaxMs] the longest pause (8 000)
 * @property {number} [gapWaitMs] how long a push waits behind a missing seq (1 000)
 * @property {boolean} [trackCursor] on a connect with no cursor, ask `state` for it (true)
 *
 * @typedef {{ timeoutMs?: number, id?: string | number }} CallOptions
 *   `id`: send with this request id (to retry, on another client, a request whose
 *   ManorError carried it as `requestId`)
 *
 * @typedef {"idle" | "connecting" | "open" | "reconnecting" | "suspended" | "closed"} Status
 */

const STABLE_MS = 5_000; // a socket that lived this long resets the reconnect backoff
const OPEN = 1;

/** @extends {Emitter<ClientEvents>} */
export class ManorClient extends Emitter {
  /**
   * @param {string} url the server (`http://host:port`, `ws://host:port`) or the full
   *   `/v1/ws` URL
   * @param {ClientOptions} options
   */
  constructor(url, options) {
    super();
    this.url = socketUrl(url);
    this.options = options;
    this.codec = options.codec ?? jsonCodec;
    this.subprotocol = this.codec.subprotocol ?? SUBPROTOCOL_MSGPACK;
    this.order = new PushOrder(options.sinceSeq ?? null);
    this.session = randomHex(12);
    /** @type {Status} */
    this.status = "idle";
    /**
     * Counters, for apps and tests: how often the client connected, resent after a
     * reconnect, retried after a retryable error, and gave up waiting behind a gap.
     * @type {{ connects: number, resent: number, retried: number, gaps: number }}
     */
    this.stats = { connects: 0, resent: 0, retried: 0, gaps: 0 };
    /** @type {OpWrappers} */
    this.ops = /** @type {any} */ (
      Object.fromEntries(OP_NAMES.map((op) => [op, (/** @type {any} */ a, /** @type {any} */ o) => this.call(op, a, o)]))
    );
    /** @type {SocketLike | null} */
    this.socket = null;
    this.generation = 0;
    this.counter = 0;
    this.attempt = 0;
    this.requests = new Requests(
      {
        generation: () => (this.socket !== null && this.socket.readyState === OPEN ? this.generation : null),
        send: (frame) => this.socket?.send(/** @type {string | Uint8Array} */ (frame)),
        backoffMs: (attempt) => this.#backoff(attempt),
        answered: (op, result) => {
          // A balance in a result is as new as its entry_seq (`state`, and every op that
          // committed: the socket that asked gets no `balance` push for it), so an older
          // `balance` push is not delivered; one newer than the app had is a `wallet`
          // event. The first snapshot's push_seq is where a resume will start from.
          const entrySeq = result?.entry_seq;
          if (typeof entrySeq === "number" && this.order.held("balance", entrySeq) && op !== "state") {
            this.emit("wallet", { balance: result.balance, entry_seq: entrySeq, delta: null });
          }
          if (op === "state" && this.order.cursor === null) this.order.cursor = result.push_seq;
        },
      },
      this.stats,
      options.retriesMax ?? 4,
    );
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.gapTimer = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.reconnectTimer = null;
  }

  /**
   * A client connected to `url`; rejects with CONNECT_FAILED if the first socket does not
   * open (a bad token, a server down). Later drops reconnect by themselves.
   * @param {string} url
   * @param {ClientOptions} options
   */
  static async connect(url, options) {
    const client = new ManorClient(url, options);
    await client.open();
    return client;
  }

  /** The seq of the last push delivered, or null before the first is known. */
  get lastSeq() {
    return this.order.cursor;
  }

  /**
   * Opens the first socket; resolves once it is open.
   * @returns {Promise<void>}
   */
  open() {
    if (this.status !== "idle") {
      return Promise.reject(new ManorError("CLOSED", `open() once, on a new client (it is ${this.status})`));
    }
    return new Promise((resolve, reject) => {
      this.#connect({ resolve, reject });
    });
  }

  /**
   * Sends one op; resolves with its result, rejects with a ManorError.
   * @template {string} K
   * @param {K} op
   * @param {ArgsOf<K>} [args]
   * @param {CallOptions} [options]
   * @returns {Promise<ResultOf<K>>}
   */
  call(op, args, options = {}) {
    if (this.status === "closed") {
      return Promise.reject(new ManorError("CLOSED", "the client is closed"));
    }
    const id = options.id ?? `${this.session}-${++this.counter}`;
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs ?? 15_000;
    return this.requests.add(id, op, this.codec.encode({ id, op, args: args ?? {} }), timeoutMs);
  }

  /** Drops the socket as a network loss would, and reconnects at once. */
  reconnect() {
    this.#drop();
    if (this.status !== "closed") this.#connect(null);
  }

  /** Drops the socket and stays away (e.g. a hidden page); requests wait for resume(). */
  suspend() {
    this.#drop();
    this.#setStatus("suspended");
  }

  /** Reconnects after suspend(), resuming pushes from the cursor. */
  resume() {
    if (this.status === "suspended") this.#connect(null);
  }

  /** Closes for good: waiting requests fail with CLOSED. */
  close() {
    this.#drop();
    this.#setStatus("closed");
    this.requests.failAll(new ManorError("CLOSED", "the client was closed"));
  }

  /**
   * @param {{ resolve: () => void, reject: (error: ManorError) => void } | null} first
   */
  async #connect(first) {
    this.#setStatus(first === null ? "reconnecting" : "connecting");
    const generation = ++this.generation;
    let token;
    try {
      token = typeof this.options.token === "function" ? await this.options.token() : this.options.token;
    } catch (error) {
      return this.#failed(generation, first, `token: ${error}`);
    }
    if (generation !== this.generation) return;
    const query = new URLSearchParams({ token });
    const cursor = this.order.cursor;
    if (cursor !== null) query.set("since_seq", String(cursor));
    const entrySeq = this.order.heldState("balance"); // no resume frame for a balance held
    if (entrySeq !== null) query.set("entry_seq", String(entrySeq));
    const Socket = this.options.WebSocket ?? /** @type {SocketConstructor} */ (globalThis.WebSocket);
    if (typeof Socket !== "function") {
      return this.#failed(generation, first, "no WebSocket: pass one in options.WebSocket (Node 20: the ws package)");
    }
    let socket;
    try {
      socket = new Socket(`${this.url}?${query}`, [this.subprotocol]);
    } catch (error) {
      return this.#failed(generation, first, `WebSocket: ${error}`); // e.g. no WebSocket here
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    let openedAt = 0;
    socket.onopen = () => {
      if (generation !== this.generation) return;
      openedAt = Date.now();
      this.stats.connects += 1;
      this.#setStatus("open");
      this.emit("open", { resumed: cursor !== null, sinceSeq: cursor, entrySeq });
      first?.resolve();
      first = null;
      this.requests.opened();
      if (cursor === null && (this.options.trackCursor ?? true)) {
        this.call("state").catch(() => {}); // its push_seq becomes the cursor (answered)
      }
    };
    socket.onmessage = (event) => {
      if (generation === this.generation) this.#receive(event.data);
    };
    socket.onerror = () => {}; // a close event follows; browsers tell nothing more
    socket.onclose = (event) => {
      if (generation !== this.generation) return;
      this.socket = null;
      this.requests.dropped();
      this.emit("close", { code: event.code, reason: String(event.reason ?? "") });
      if (first !== null) {
        this.#failed(generation, first, `the socket closed before opening (code ${event.code})`);
        return;
      }
      if (openedAt > 0 && Date.now() - openedAt >= STABLE_MS) this.attempt = 0;
      this.#scheduleReconnect();
    };
  }

  /**
   * @param {number} generation
   * @param {{ reject: (error: ManorError) => void } | null} first
   * @param {string} why
   */
  #failed(generation, first, why) {
    if (generation !== this.generation) return;
    if (first === null) {
      this.#scheduleReconnect();
      return;
    }
    this.#setStatus("closed");
    first.reject(new ManorError("CONNECT_FAILED", why));
  }

  #scheduleReconnect() {
    if (this.status === "closed" || this.status === "suspended") return;
    this.#setStatus("reconnecting");
    const delayMs = this.#backoff(this.attempt++);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.#connect(null);
    }, delayMs);
  }

  /** @param {number} attempt */
  #backoff(attempt) {
    const baseMs = this.options.backoffMs ?? 250;
    const capMs = this.options.backoffMaxMs ?? 8_000;
    const ms = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 16));
    return ms / 2 + Math.random() * (ms / 2); // jitter: reconnects of many apps spread out
  }

  #drop() {
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.generation += 1; // the old socket's events are ignored from now on
    const socket = this.socket;
    this.socket = null;
    this.requests.dropped();
    if (socket !== null) {
      try {
        socket.close(1000, "client");
      } catch {
        // a socket still connecting may refuse close codes; it is dropped either way
      }
    }
  }

  /** @param {unknown} data */
  #receive(data) {
    let message;
    try {
      message = /** @type {Record<string, any>} */ (decodeFrame(this.codec, data));
    } catch (error) {
      this.emit("unmatched", { error: String(error) });
      return;
    }
    if (typeof message.push === "string") {
      this.#onPush(/** @type {PushFrame} */ (message));
      return;
    }
    if (!this.requests.answer(message)) this.emit("unmatched", message);
  }

  /** @param {PushFrame} push */
  #onPush(push) {
    for (const next of this.order.accept(push)) this.#deliver(next);
    if (this.order.blocked && this.gapTimer === null) {
      this.gapTimer = setTimeout(() => {
        this.gapTimer = null;
        this.stats.gaps += 1;
        const late = this.order.flush();
        this.emit("gap", { seq: late[0]?.seq ?? 0 });
        for (const next of late) this.#deliver(next);
      }, this.options.gapWaitMs ?? 1_000);
    } else if (!this.order.blocked && this.gapTimer !== null) {
      clearTimeout(this.gapTimer);
      this.gapTimer = null;
    }
  }

  /** @param {PushFrame} push */
  #deliver(push) {
    const typed = /** @type {any} */ (push); // a type the server added is delivered too
    this.emit("push", typed);
    this.emit(/** @type {PushName} */ (push.push), typed.data, typed);
    const data = typed.data;
    if (push.push === "balance" && typeof data?.entry_seq === "number") {
      this.emit("wallet", { balance: data.balance, entry_seq: data.entry_seq, delta: data.delta });
    }
  }

  /** @param {Status} status */
  #setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.emit("status", status);
  }
}

/** @param {string} url */
function socketUrl(url) {
  const parsed = new URL(url);
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  if (parsed.protocol === "https:") parsed.protocol = "wss:";
  if (!parsed.pathname.endsWith("/v1/ws")) {
    parsed.pathname = `${parsed.pathname.replace(/\/+$/, "")}/v1/ws`;
  }
  parsed.search = "";
  return parsed.toString();
}

/** @param {number} digits */
function randomHex(digits) {
  const bytes = new Uint8Array(Math.ceil(digits / 2));
  globalThis.crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("").slice(0, digits);
}
