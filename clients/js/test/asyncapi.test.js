// The client's ops and pushes (src/ops.js) are exactly the ones docs/asyncapi.yaml
// describes: an op added to one and not the other fails here, naming it.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { parse } from "yaml";

import { OP_NAMES, PUSH_NAMES } from "../src/ops.js";

const DOC = fileURLToPath(new URL("../../../docs/asyncapi.yaml", import.meta.url));
const doc = parse(readFileSync(DOC, "utf8"));

/** @param {string} key @returns {Set<string>} the `const` of that property in every schema */
function constsOf(key) {
  const names = new Set();
  for (const schema of Object.values(doc.components.schemas)) {
    const value = /** @type {any} */ (schema)?.properties?.[key]?.const;
    if (typeof value === "string") names.add(value);
  }
  return names;
}

/** @param {Iterable<string>} names */
const sorted = (names) => [...names].sort();

test("test_asyncapi_ops_equal_the_clients", () => {
  // The operations the server receives, by title, and the request schemas' op consts
  // must agree with each other and with the client.
  const received = Object.values(doc.operations)
    .filter((operation) => /** @type {any} */ (operation).action === "receive")
    .map((operation) => /** @type {any} */ (operation).title);
  assert.deepEqual(sorted(received), sorted(constsOf("op")), "asyncapi.yaml disagrees with itself");
  const missing = received.filter((op) => !OP_NAMES.includes(op));
  const extra = OP_NAMES.filter((op) => !received.includes(op));
  assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, "edit clients/js/src/ops.js");
});

test("test_asyncapi_pushes_equal_the_clients", () => {
  const documented = constsOf("push");
  const missing = sorted(documented).filter((push) => !PUSH_NAMES.includes(/** @type {any} */ (push)));
  const extra = PUSH_NAMES.filter((push) => !documented.has(push));
  assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, "edit clients/js/src/ops.js");
  assert.ok(documented.size >= 7, "the document lists its pushes");
});
