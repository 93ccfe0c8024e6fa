// A live `manor serve` for the tests: the repository's venv, a free port, a temporary
// data dir (with its embedded store), the dev clock on and a known JWT secret, so tests
// mint their own player tokens. test/run.js starts one for the whole run and passes it
// on in MANOR_TEST_URL / MANOR_TEST_SECRET; a test file run alone starts its own.

import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const MANOR = join(REPO, ".venv/bin/manor");
const READY_WAIT_MS_MAX = 30_000;
const STOP_WAIT_MS_MAX = 10_000;

/** @typedef {{ url: string, secret: string, stop: () => Promise<void> }} LiveServer */

/** @returns {Promise<number>} */
function freePort() {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.on("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      probe.close(() => done(port));
    });
  });
}

/**
 * Starts `manor serve`; resolves once /readyz answers 200.
 * @param {Record<string, string>} [settings] extra MANOR_* variables
 * @returns {Promise<LiveServer>}
 */
export async function startServer(settings = {}) {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), "manor-js-"));
  const secret = randomBytes(32).toString("hex");
  /** @type {Record<string, string>} */
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("MANOR_") && value !== undefined) env[key] = value;
  }
  Object.assign(env, {
    MANOR_PORT: String(port),
    MANOR_DATA_DIR: dataDir,
    MANOR_DEV_CLOCK: "1",
    MANOR_JWT_SECRET: secret,
    // MANOR_TEST_RULES: another rules file (the shipped default.toml when unset)
    ...(process.env.MANOR_TEST_RULES ? { MANOR_RULES: process.env.MANOR_TEST_RULES } : {}),
    ...settings,
  });
  const child = spawn(MANOR, ["serve", "--log-level", "warning"], {
    cwd: REPO,
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr?.on("data", (chunk) => {
    log = (log + chunk).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((done) => child.once("exit", done));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_WAIT_MS_MAX);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + READY_WAIT_MS_MAX;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`manor serve exited with ${child.exitCode}:\n${log}`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`manor serve was not ready in ${READY_WAIT_MS_MAX} ms:\n${log}`);
    }
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) break;
    } catch {
      // not listening yet
    }
    await new Promise((done) => setTimeout(done, 100));
  }
  return { url, secret, stop };
}

/**
 * The run's server (test/run.js), or one of this file's own, stopped when it ends.
 * @param {(fn: () => Promise<void>) => void} after node:test's `after`
 * @returns {Promise<{ url: string, secret: string }>}
 */
export async function liveServer(after) {
  const url = process.env.MANOR_TEST_URL;
  const secret = process.env.MANOR_TEST_SECRET;
  if (url && secret) return { url, secret };
  const server = await startServer();
  after(server.stop);
  return server;
}

/**
 * An HS256 player token, as `manor token` makes them (server/auth.py).
 * @param {string} secret
 * @param {string} player
 * @param {number} [ttlS]
 */
export function mintToken(secret, player, ttlS = 3600) {
  const nowS = Math.floor(Date.now() / 1000);
  const part = (/** @type {object} */ value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub: player, iat: nowS, exp: nowS + ttlS })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

/**
 * Moves every server process's clock forward (POST /dev/clock, MANOR_DEV_CLOCK=1).
 * @param {string} url
 * @param {number} advanceMs
 * @returns {Promise<{ now_ms: number, offset_ms: number }>}
 */
export async function advanceClock(url, advanceMs) {
  const answer = await fetch(`${url}/dev/clock`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ advance_ms: advanceMs }),
  });
  if (answer.status !== 200) throw new Error(`dev clock: ${answer.status} ${await answer.text()}`);
  return /** @type {any} */ (await answer.json());
}

/** A player id no other test uses. @param {string} name */
export function uniquePlayer(name) {
  return `${name}-${randomBytes(4).toString("hex")}`;
}
