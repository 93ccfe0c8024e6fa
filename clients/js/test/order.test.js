// PushOrder, with no server: each seq once, ascending, whatever order they arrive in.

import assert from "node:assert/strict";
import { test } from "node:test";

import { PushOrder } from "../src/order.js";

/** @param {number} seq @param {string} [push] */
const p = (seq, push = "stolen") => ({ push, seq, data: {} });
/** @param {{ seq: number }[]} pushes */
const seqs = (pushes) => pushes.map((push) => push.seq);

test("test_order_unknown_cursor_takes_the_first_push", () => {
  const order = new PushOrder();
  assert.deepEqual(seqs(order.accept(p(7))), [7]);
  assert.equal(order.cursor, 7);
});

test("test_order_drops_duplicates_and_old_seqs", () => {
  const order = new PushOrder(3);
  assert.deepEqual(seqs(order.accept(p(3))), []);
  assert.deepEqual(seqs(order.accept(p(4))), [4]);
  assert.deepEqual(seqs(order.accept(p(4))), []);
  assert.equal(order.cursor, 4);
});

test("test_order_newer_live_push_waits_for_the_replayed_older_ones", () => {
  const order = new PushOrder(3);
  assert.deepEqual(seqs(order.accept(p(6))), []);
  assert.equal(order.blocked, true);
  assert.deepEqual(seqs(order.accept(p(4))), [4]);
  assert.deepEqual(seqs(order.accept(p(6))), []); // a duplicate while waiting
  assert.deepEqual(seqs(order.accept(p(5))), [5, 6]);
  assert.equal(order.blocked, false);
  assert.equal(order.cursor, 6);
});

test("test_order_flush_gives_up_on_a_gap_in_order", () => {
  const order = new PushOrder(1);
  order.accept(p(5));
  order.accept(p(3));
  assert.deepEqual(seqs(order.flush()), [3, 5]);
  assert.equal(order.cursor, 5);
  assert.deepEqual(seqs(order.accept(p(6))), [6]);
});

test("test_order_too_many_waiting_flushes", () => {
  const order = new PushOrder(0, 2);
  assert.deepEqual(seqs(order.accept(p(3))), []);
  assert.deepEqual(seqs(order.accept(p(2))), []);
  assert.deepEqual(seqs(order.accept(p(4))), [2, 3, 4]);
});

test("test_order_resync_sets_the_cursor_even_lower", () => {
  const order = new PushOrder(50);
  order.accept(p(53));
  const out = order.accept(p(2, "resync"));
  assert.deepEqual(out.map((push) => [push.push, push.seq]), [["resync", 2]]);
  assert.equal(order.cursor, 2);
  assert.equal(order.blocked, true); // 53 is newer than the snapshot: it still waits
  assert.deepEqual(seqs(order.accept(p(3))), [3]);
});

test("test_order_resync_drops_waiting_pushes_it_covers", () => {
  const order = new PushOrder(1);
  order.accept(p(4));
  order.accept(p(9, "resync"));
  assert.equal(order.blocked, false);
  assert.deepEqual(seqs(order.accept(p(10))), [10]);
});

/** @param {number} balance @param {number} entrySeq */
const balance = (balance, entrySeq) => ({ push: "balance", seq: 0, data: { balance, delta: 0, entry_seq: entrySeq } });

test("test_order_a_state_push_goes_out_at_once_even_behind_a_gap", () => {
  const order = new PushOrder(3);
  assert.deepEqual(seqs(order.accept(p(5))), []);
  assert.deepEqual(order.accept(balance(40, 9)), [balance(40, 9)]);
  assert.equal(order.cursor, 3); // a state push moves no cursor
  assert.deepEqual(seqs(order.accept(p(4))), [4, 5]);
});

test("test_order_an_older_or_repeated_state_push_is_dropped", () => {
  const order = new PushOrder(0);
  assert.deepEqual(order.accept(balance(40, 9)), [balance(40, 9)]);
  assert.deepEqual(order.accept(balance(30, 8)), []); // a resume's, passed by a live one
  assert.deepEqual(order.accept(balance(40, 9)), []);
  assert.deepEqual(order.accept(balance(55, 10)), [balance(55, 10)]);
});

test("test_order_a_state_push_at_or_below_a_snapshot_s_is_dropped", () => {
  const order = new PushOrder(0);
  order.held("balance", 12);
  assert.deepEqual(order.accept(balance(40, 12)), []);
  order.held("balance", 3); // an older snapshot never lowers it
  assert.deepEqual(order.accept(balance(41, 11)), []);
  assert.deepEqual(order.accept(balance(50, 13)), [balance(50, 13)]);
});

test("test_order_a_balance_push_of_before_without_entry_seq_is_sequenced", () => {
  const order = new PushOrder(3);
  const old = { push: "balance", seq: 4, data: { balance: 10, delta: 10 } }; // still in an inbox
  assert.deepEqual(order.accept(old), [old]);
  assert.equal(order.cursor, 4);
  assert.deepEqual(order.accept(old), []); // replayed twice: a duplicate
});
