-- compact.lua: trim a player's archived journal head into the wallet's checkpoint, and prune
-- transfer ids and hold tombstones older than the idempotency window (server/ledger/compaction.py).
--
-- KEYS (all carry the player's bucket tag, so one hash slot):
--   1 state    hash  the player's one hash: its ck_seq, ck_head, ck_bal, ck_batches,
--                    ck_accounts and ck_marks (see below) are compaction's
--   2 journal  list  msgpack entries, oldest first (format 1 or 2: server/ledger/ledger.py)
--   3 txids    hash  transfer id -> "<seq>" (format 2) or "<kind>|<amount>|<account>|<seq>"
--   4 holds    hash  order id -> "pending|..." or tombstone "posted|<ms>" / "voided|<ms>"
-- ARGV:
--   1 n_entries        journal entries to trim from the head (already archived and fsynced)
--   2 ck_seq_before    the checkpoint seq the plan was made from (0: none)
--   3 ck_head_before   its chain hash ("" when none)
--   4 ck_marks_before  the ck_marks bytes the plan read ("" when none)
--   5 first_digest     sha1 hex of the first entry's bytes ("" when n_entries is 0)
--   6 last_digest      sha1 hex of the last entry's bytes ("" when n_entries is 0)
--   7 ck_seq           seq of the last entry to trim (= ck_seq_before + n_entries)
--   8 ck_bal           coins: balance_after of that entry
--   9 ck_batches       msgpack map batch YYYYMMDD -> coins after that entry
--  10 ck_accounts      msgpack map system account -> signed coins of this player's entries
--                      up to ck_seq (the system's side)
--  11 ck_marks         msgpack list of [seq, max ts_ms]: archived runs whose ids are kept
--  12 txid_seq_max     transfer ids whose entry seq is <= it are pruned (0: none)
--  13 tomb_before_ms   epoch ms: tombstones older than it are pruned
--  14 n_txids
--  15 n_orders
--  16 ck_head          the chain head after the last entry to trim: the new ck_head
--  17 n_rewrites       archived format-2 entries whose txids value becomes format 1
--   then n_txids  transfer ids (each checked: its seq must be <= txid_seq_max)
--   then n_orders hold order ids (each checked: a tombstone older than tomb_before_ms)
--   then n_rewrites x (transfer id, "<kind>|<amount>|<account>|<seq>"): each id's value must
--                 be "<seq>" now, and seq one of the entries trimmed
-- Returns {status, entries_trimmed, txids_pruned, tombstones_pruned}; status "ok",
-- "MOVED" (the checkpoint or the journal head is not what the plan read: nothing written,
-- plan again) or "BAD_PLAN" (inconsistent arguments: a bug in the caller; nothing written).
--
-- Every check runs before the first write: Redis does not roll back a failed script.

local n = tonumber(ARGV[1])
local ck_seq_before = tonumber(ARGV[2])
local ck_seq = tonumber(ARGV[7])
local txid_seq_max = tonumber(ARGV[12])
local tomb_before_ms = tonumber(ARGV[13])
local n_txids, n_orders = tonumber(ARGV[14]), tonumber(ARGV[15])
local n_rewrites = tonumber(ARGV[17])
local listed_at = 17

local now = redis.call('HMGET', KEYS[1], 'ck_seq', 'ck_head', 'ck_marks')
if tonumber(now[1] or '0') ~= ck_seq_before or (now[2] or '') ~= ARGV[3]
    or (now[3] or '') ~= ARGV[4] then
  return {'MOVED', 0, 0, 0}
end
if not n or n < 0 or not ck_seq or ck_seq ~= ck_seq_before + n or not txid_seq_max
    or txid_seq_max > ck_seq or not tomb_before_ms or not n_rewrites or n_rewrites > n then
  return {'BAD_PLAN', 0, 0, 0}
end
if n > 0 then
  if redis.call('LLEN', KEYS[2]) < n then return {'MOVED', 0, 0, 0} end
  local first = redis.call('LINDEX', KEYS[2], 0)
  local last = redis.call('LINDEX', KEYS[2], n - 1)
  if redis.sha1hex(first) ~= ARGV[5] or redis.sha1hex(last) ~= ARGV[6] then
    return {'MOVED', 0, 0, 0}
  end
  local fields = cmsgpack.unpack(last)
  if tonumber(fields[1]) ~= ck_seq then return {'MOVED', 0, 0, 0} end
end

local function seq_of(value)
  return value and (tonumber(value) or tonumber(string.match(value, '|(%d+)$')))
end
local rewrites = {}
for i = 1, n_rewrites do
  local at = listed_at + n_txids + n_orders + 2 * i
  local id, value = ARGV[at - 1], ARGV[at]
  local seq = tonumber(string.match(value, '^[cd]|%d+|.*|(%d+)$'))
  if not seq or seq <= ck_seq_before or seq > ck_seq then return {'BAD_PLAN', 0, 0, 0} end
  if redis.call('HGET', KEYS[3], id) ~= tostring(seq) then return {'MOVED', 0, 0, 0} end
  rewrites[#rewrites + 1] = id
  rewrites[#rewrites + 1] = value
end
local txids = {}
for i = 1, n_txids do
  local id = ARGV[listed_at + i]
  local seq = seq_of(redis.call('HGET', KEYS[3], id))
  if seq and seq <= txid_seq_max then txids[#txids + 1] = id end
end
local orders = {}
for i = 1, n_orders do
  local order = ARGV[listed_at + n_txids + i]
  local value = redis.call('HGET', KEYS[4], order)
  local word, ms = nil, nil
  if value then word, ms = string.match(value, '^(%a+)|(%d+)$') end
  if (word == 'posted' or word == 'voided') and tonumber(ms) < tomb_before_ms then
    orders[#orders + 1] = order
  end
end

-- HDEL in slices: unpack() of more than ~8000 values would fail after the first write.
local function hdel_all(key, fields)
  for at = 1, #fields, 1000 do
    redis.call('HDEL', key, unpack(fields, at, math.min(at + 999, #fields)))
  end
end

-- Writes. Nothing below may fail.
if n > 0 then
  redis.call('LTRIM', KEYS[2], n, -1)
  redis.call('HSET', KEYS[1], 'ck_seq', ck_seq, 'ck_head', ARGV[16], 'ck_bal', ARGV[8],
    'ck_batches', ARGV[9], 'ck_accounts', ARGV[10])
end
for at = 1, #rewrites, 1000 do
  redis.call('HSET', KEYS[3], unpack(rewrites, at, math.min(at + 999, #rewrites)))
end
if ARGV[11] ~= ARGV[4] then
  redis.call('HSET', KEYS[1], 'ck_marks', ARGV[11])
end
hdel_all(KEYS[3], txids)
hdel_all(KEYS[4], orders)
return {'ok', n, #txids, #orders}
