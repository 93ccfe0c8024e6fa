// `npm test`: one live server for the whole run, then `node --test` over test/*.test.js,
// one file at a time (the dev clock is shared: a file that advances it must not race
// another's timings).

import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { startServer } from "./server.js";

const here = dirname(fileURLToPath(import.meta.url));
const files = readdirSync(here)
  .filter((name) => name.endsWith(".test.js"))
  .sort()
  .map((name) => join(here, name));
const server = await startServer();
let code = 1;
try {
  const runner = spawn(process.execPath, ["--test", "--test-concurrency=1", "--test-timeout=60000", ...files], {
    stdio: "inherit",
    env: { ...process.env, MANOR_TEST_URL: server.url, MANOR_TEST_SECRET: server.secret },
  });
  code = await new Promise((done) => runner.on("exit", (exitCode) => done(exitCode ?? 1)));
} finally {
  await server.stop();
}
process.exit(code);
