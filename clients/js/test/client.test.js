// ManorClient against a live `manor serve` (test/run.js starts it; run alone, this file
// starts its own): the ops, pushes between players, retries and resume.

import assert from "node:assert/strict";
import { after, afterEach, test } from "node:test";

import * as msgpack from "@msgpack/msgpack";

import { ManorClient, ManorError, OP_NAMES } from "../src/index.js";
import { befriend, players, record, until } from "./live.js";
import { advanceClock, liveServer, mintToken, startServer } from "./server.js";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const server = await liveServer(after);
const manor = players(server);
afterEach(() => manor.closeAll());

test("test_sign_in_pays_once_and_pushes_the_balance_to_the_other_sockets", async () => {
  const name = manor.name("alice");
  const alice = await manor.open(name);
  const tablet = await manor.open(name);
  const pushes = record(alice);
  const tabletPushes = record(tablet);
  /** @type {unknown[][]} */
  const wallets = [[], []];
  alice.on("wallet", (info) => wallets[0].push(info));
  tablet.on("wallet", (info) => wallets[1].push(info));
  await tablet.ops.state(); // attached before the credit
  const signed = await alice.ops.sign_in();
  assert.deepEqual(
    [signed.coins, signed.streak, signed.already, signed.balance, signed.entry_seq],
    [10, 1, false, 10, 1],
  );
  const push = await until(() => tabletPushes.find((p) => p.push === "balance"), "the balance push");
  assert.deepEqual(push, { push: "balance", seq: 0, data: { balance: 10, delta: 10, entry_seq: 1 } });
  const again = await alice.call("sign_in");
  assert.equal(again.already, true);
  const state = await alice.ops.state();
  // `balance` is a state push (seq 0); the snapshot says which balance it is by entry_seq.
  assert.deepEqual(
    [state.balance, state.entry_seq, state.signed_in_today, state.push_seq],
    [10, 1, true, 0],
  );
  assert.deepEqual(state.batches.map((b) => b.coins), [10]);
  // The reply carried alice's balance: the push went to the tablet only. Each client's
  // `wallet` event said it once, whichever way it came.
  assert.deepEqual(pushes.filter((p) => p.push === "balance"), []);
  assert.deepEqual(wallets, [
    [{ balance: 10, entry_seq: 1, delta: null }],
    [{ balance: 10, entry_seq: 1, delta: 10 }],
  ]);
});

test("test_plant_and_harvest_on_the_dev_clock", async () => {
  const bob = await manor.open(manor.name("bob"));
  const pushes = record(bob);
  const planted = await bob.ops.plant({ plot: 0, seed: "turnip" });
  assert.equal(planted.crop.stage, "growing");
  await assert.rejects(bob.ops.harvest({ plot: 0 }), { code: "NOT_RIPE" });
  const farm = await bob.ops.farm();
  await advanceClock(server.url, planted.crop.ripe_at_ms - farm.now_ms + 1);
  const ripe = await until(() => pushes.find((p) => p.push === "crop_ripe"), "crop_ripe");
  assert.deepEqual(ripe.data, { plot: 0, cycle: planted.crop.cycle, seed: "turnip" });
  const harvested = await bob.ops.harvest({ plot: 0 });
  assert.deepEqual([harvested.coins, harvested.balance], [20, 20]);
  assert.deepEqual((await bob.ops.farm()).plots[0], { plot: 0, empty: true });
});

test("test_water_and_steal_push_to_the_owner_as_they_happen", async () => {
  const [aliceName, bobName] = [manor.name("alice"), manor.name("bob")];
  const alice = await manor.open(aliceName);
  const bob = await manor.open(bobName);
  const bobPushes = record(bob);
  await befriend(alice, bob, aliceName, bobName);
  const planted = await bob.ops.plant({ plot: 0, seed: "turnip" });
  const watered = await alice.ops.water({ player: bobName, plot: 0 });
  assert.ok(watered.advanced_ms > 0);
  const wateredPush = await until(() => bobPushes.find((p) => p.push === "watered"), "watered");
  assert.deepEqual(wateredPush.data, {
    by: aliceName,
    plot: 0,
    advanced_ms: watered.advanced_ms,
    ripe_at_ms: planted.crop.ripe_at_ms - watered.advanced_ms,
  });
  await assert.rejects(alice.ops.steal({ player: bobName, plot: 0 }), { code: "FRIENDSHIP_TOO_NEW" });
  await advanceClock(server.url, DAY_MS);
  const visit = await alice.ops.visit({ player: bobName });
  assert.equal(visit.plots[0].empty ? null : visit.plots[0].can_steal, true);
  const stolen = await alice.ops.steal({ player: bobName, plot: 0 });
  assert.equal(stolen.coins, 2);
  const stolenPush = await until(() => bobPushes.find((p) => p.push === "stolen"), "stolen");
  assert.deepEqual(stolenPush.data, { by: aliceName, plot: 0, coins: 2 });
  const harvested = await bob.ops.harvest({ plot: 0 });
  assert.equal(harvested.coins, 18);
  const seqs = bobPushes.filter((p) => p.push !== "balance").map((p) => p.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "pushes in seq order");
});

test("test_request_resent_after_a_forced_reconnect_is_answered_once", async () => {
  const carol = await manor.open(manor.name("carol"));
  /** @type {unknown[]} */
  const unmatched = [];
  carol.on("unmatched", (message) => unmatched.push(message));
  await until(() => carol.lastSeq !== null, "the client's own state call"); // resent: ours only
  const answer = carol.call("sign_in");
  carol.reconnect(); // the first socket's reply is lost; the frame went out on it
  const signed = await answer;
  assert.equal(carol.stats.resent, 1);
  // The stored reply of the first send, not a second run ("already": true).
  assert.deepEqual([signed.coins, signed.already, signed.balance], [10, false, 10]);
  const page = await carol.ops.ledger({ limit: 10 });
  assert.deepEqual(page.entries.map((e) => e.amount), [10]);
  assert.deepEqual(unmatched, []);
});

test("test_call_with_an_explicit_id_gets_the_stored_reply_on_another_socket", async () => {
  const name = manor.name("dave");
  const first = await manor.open(name);
  await first.ops.plant({ plot: 1, seed: "turnip" });
  const farm = await first.ops.farm();
  await advanceClock(server.url, 5 * HOUR_MS);
  const harvested = await first.call("harvest", { plot: 1 }, { id: "harvest-retry-1" });
  first.close();
  const second = await manor.open(name);
  const again = await second.call("harvest", { plot: 1 }, { id: "harvest-retry-1" });
  assert.deepEqual(again, harvested);
  assert.equal((await second.ops.state()).balance, 20);
  assert.ok(farm.plots[1].empty !== true);
});

test("test_reconnect_with_since_seq_replays_missed_pushes_in_order", async () => {
  const [aliceName, bobName] = [manor.name("alice"), manor.name("bob")];
  const alice = await manor.open(aliceName);
  const bob = await manor.open(bobName);
  await befriend(alice, bob, aliceName, bobName);
  for (const plot of [0, 1, 2]) await bob.ops.plant({ plot, seed: "turnip" });
  await bob.ops.state(); // the cursor is known
  const cursor = /** @type {number} */ (bob.lastSeq);
  const pushes = record(bob);
  /** @type {{ resumed: boolean, sinceSeq: number | null }[]} */
  const opens = [];
  bob.on("open", (info) => opens.push(info));
  bob.suspend();
  for (const plot of [0, 1, 2]) await alice.ops.water({ player: bobName, plot });
  assert.equal(pushes.length, 0, "bob was away");
  bob.resume();
  const sequenced = () => pushes.filter((p) => p.seq > 0);
  await until(() => sequenced().length >= 3, "three replayed pushes");
  assert.deepEqual(opens, [{ resumed: true, sinceSeq: cursor, entrySeq: bob.order.heldState("balance") }]);
  assert.deepEqual(
    sequenced().map((p) => [p.push, p.seq, p.push === "watered" ? p.data.plot : null]),
    [
      ["watered", cursor + 1, 0],
      ["watered", cursor + 2, 1],
      ["watered", cursor + 3, 2],
    ],
  );
  assert.equal(bob.lastSeq, cursor + 3);
});

test("test_a_reconnect_names_the_balance_it_holds", async () => {
  const name = manor.name("rae");
  const rae = await manor.open(name);
  const signed = await rae.ops.sign_in();
  /** @type {{ resumed: boolean, sinceSeq: number | null, entrySeq: number | null }[]} */
  const opens = [];
  rae.on("open", (info) => opens.push(info));
  /** @type {unknown[]} */
  const wallets = [];
  rae.on("wallet", (wallet) => wallets.push(wallet));
  rae.suspend();
  rae.resume();
  await until(() => opens.length === 1, "the reconnect");
  await rae.ops.state(); // answered after the resume's frames
  assert.equal(opens[0].entrySeq, signed.entry_seq);
  assert.deepEqual(wallets, [], "the balance it held did not move");
});

test("test_resync_moves_the_cursor_back_to_the_servers", async () => {
  /** @type {unknown[]} */
  const resyncs = [];
  /** @type {number[]} */
  const balances = [];
  const name = manor.name("erin");
  const erin = await manor.open(name, { sinceSeq: 1000 }, (client) => {
    client.on("resync", (data, push) => resyncs.push([data, push.seq]));
    client.on("balance", (data) => balances.push(data.balance));
  });
  await until(() => resyncs.length > 0, "the resync push");
  assert.deepEqual(resyncs, [[{ snapshot_needed: true }, 0]]);
  assert.equal(erin.lastSeq, 0);
  const phone = await manor.open(name);
  await phone.ops.sign_in(); // the balance push goes to erin's other socket
  await until(() => balances.length > 0, "the balance push after the resync");
  assert.deepEqual(balances, [10]);
  assert.equal(erin.lastSeq, 0); // a state push moves no cursor
});

test("test_msgpack_codec_speaks_binary_frames", async () => {
  const name = manor.name("frank");
  const frank = await manor.open(name, { codec: msgpack });
  assert.equal(frank.subprotocol, "manor.v1.msgpack");
  assert.equal(/** @type {any} */ (frank.socket).protocol, "manor.v1.msgpack");
  const pushes = record(frank);
  assert.equal((await frank.ops.state()).balance, 0);
  const phone = await manor.open(name); // JSON: its credit pushes to frank's msgpack socket
  const signed = await phone.ops.sign_in();
  assert.equal(signed.coins, 10);
  const push = await until(() => pushes.find((p) => p.push === "balance"), "a msgpack push");
  assert.deepEqual(push.data, { balance: 10, delta: 10, entry_seq: 1 });
  await assert.rejects(frank.call("ledger", { limit: 10_000 }), { code: "BAD_ARGS" });
});

test("test_errors_carry_the_servers_code_and_the_request_id", async () => {
  const gina = await manor.open(manor.name("gina"));
  const refused = await gina.call("no_such_op").catch((error) => error);
  assert.ok(refused instanceof ManorError);
  assert.equal(refused.code, "UNKNOWN_OP");
  assert.match(String(refused.requestId), /^[0-9a-f]{12}-\d+$/);
  await assert.rejects(gina.ops.plant({ plot: 0, seed: "cactus" }), { code: "UNKNOWN_SEED" });
  assert.deepEqual(Object.keys(gina.ops).sort(), [...OP_NAMES].sort());
});

test("test_rate_limited_requests_are_matched_in_order_and_resent", async () => {
  // A server of its own with a small budget (2 requests/s, bursts of 10): 16 requests at
  // once are refused from the 11th, whatever the machine's speed, and fewer than the
  // 20 consecutive refusals that close the socket.
  const tight = await startServer({ MANOR_REQUESTS_PER_S_MAX: "2", MANOR_REQUEST_BURST_MAX: "10" });
  try {
    const hank = await players(tight).open("hank", { retriesMax: 20, timeoutMs: 30_000 });
    /** @type {unknown[]} */
    const unmatched = [];
    hank.on("unmatched", (message) => unmatched.push(message));
    const asked = Array.from({ length: 16 }, (_, n) => `friend-${n}`);
    const edges = await Promise.all(asked.map((player) => hank.ops.friend_request({ player })));
    // Each answer is its own request's (no reply went to another), all on one socket.
    assert.deepEqual(edges.map((edge) => edge.player), asked);
    assert.deepEqual((await hank.ops.friends()).outgoing.sort(), [...asked].sort());
    assert.ok(hank.stats.retried >= 6, `refused then resent: ${hank.stats.retried}`);
    assert.deepEqual([hank.stats.connects, unmatched.length], [1, 0]);
    hank.close();
  } finally {
    await tight.stop();
  }
});

test("test_connect_with_a_bad_token_fails_fast", async () => {
  const refused = ManorClient.connect(server.url, {
    token: mintToken("another secret that the server does not know", "ivan"),
    WebSocket: /** @type {any} */ ((await import("ws")).default),
  });
  await assert.rejects(refused, { code: "CONNECT_FAILED" });
});
