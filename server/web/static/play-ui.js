// Small helpers of /play: building elements, the server's clock, times and toasts.

/**
 * An element with attributes and children: el("button", { "data-test": "x" }, "Go").
 * `on*` attributes given functions become listeners.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      node.className = value;
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const $ = (id) => document.getElementById(id);

/**
 * The server's clock as seen from here. Every reply with `now_ms` (farm, visit) moves the
 * estimate: skew = server time - local time at arrival, taking half the round trip as
 * the reply's age. Ripening is computed on this clock, so a phone whose clock is off by
 * minutes (or a server on the dev clock) still shows a crop ripe when the server says so.
 */
export class ServerClock {
  constructor() {
    this.skewMs = 0;
  }

  /** @param {number} serverNowMs @param {number} sentAtMs local time the request left */
  observe(serverNowMs, sentAtMs) {
    const arrivedMs = Date.now();
    this.skewMs = serverNowMs - (sentAtMs + arrivedMs) / 2;
  }

  now() {
    return Date.now() + this.skewMs;
  }
}

/** "3h 12m", "4m 05s", "12s" */
export function duration(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

/** A timestamp (epoch ms) as a short local date and time. */
export function when(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function clockTime(ms) {
  const d = new Date(ms);
  return d.toTimeString().slice(0, 8);
}

/** Seeds as people read them: golden_pear -> Golden pear. */
export function seedName(seed) {
  const text = seed.replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** A seed's colour dot (CSS, no emoji: a phone or a headless browser may lack the font). */
export const seedIcon = (seed) => el("i", { class: `dot seed-${seed}`, "aria-hidden": "true" });

const TOASTS_MAX = 4;
const TOAST_MS = 4000;

/** A message at the bottom of the screen for a few seconds. */
export function toast(text, kind = "") {
  const box = $("toasts");
  const node = el("div", { class: `toast ${kind}`, "data-test": "toast", "data-kind": kind }, text);
  box.append(node);
  while (box.children.length > TOASTS_MAX) box.firstElementChild.remove();
  setTimeout(() => node.remove(), TOAST_MS);
}

/** The message of an error for people: a server code, or what went wrong. */
export function problem(error) {
  const code = error?.code;
  const text = {
    NOT_RIPE: "not ripe yet",
    ALREADY_RIPE: "already ripe: it needs no water",
    ALREADY_WATERED: "you watered this crop already",
    ALREADY_STOLEN: "you took your share of this crop already",
    STEAL_CAP_REACHED: "thieves took all this crop allows",
    DAILY_CAP_REACHED: "you reached today's limit",
    NOT_FRIENDS: "you are not friends",
    PLOT_BUSY: "the plot has a crop",
    PLOT_EMPTY: "the plot is empty",
    SELF_TARGET: "that is you",
    ALREADY_FRIENDS: "you are friends already",
    NO_REQUEST: "there is no request",
    BLOCKED: "one of you blocked the other",
    FRIENDS_LIMIT: "too many friends and requests",
  }[code];
  if (text) return text;
  if (code === "FRIENDSHIP_TOO_NEW") return `new friends must wait: ${error.message.replace(/^[A-Z_]+: /, "")}`;
  return error?.message ?? String(error);
}
