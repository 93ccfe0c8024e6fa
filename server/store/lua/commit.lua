-- commit.lua: apply one rule outcome for one player atomically: state + ledger + holds +
-- inbox + publish + outbox + timers.
--
-- KEYS (all carry the player's bucket tag, so one hash slot):
--   1 state     hash  the player's one hash (layout 3, server/store/layout.py):
--                     the rule's side: ver, pseq, vs (the stamp of ver's writer), rule
--                     components (msgpack, never read here);
--                     sk (the player's live sockets when the newest opened: written by
--                     socket_lease.lua, read here, never written);
--                     the wallet's side: bal, seq, head, held, debt, bt (the coins per
--                     expiry batch, oldest first: "<YYYYMMDD>=<coins>,..."), hx (the index of
--                     pending checkout holds: msgpack map order id -> [coins, expires_ms]),
--                     ck_seq (the last entry compaction archived: the journal starts after
--                     it) and compaction's other ck_* fields
--   2 journal   list  msgpack entries, oldest first: format 2
--                     [seq, ts_s, account, amount, balance_after, batches, ref, tag]
--                     (server/ledger/ledger.py; format-1 entries before them are read too)
--   3 txids     hash  transfer id -> "<seq>" (format 2), or "<kind>|<amount>|<account>|<seq>"
--                     (format 1, and what compaction leaves of an archived entry's id, the
--                     account by its code where it has one)
--   4 sys       hash  system account (bucket-local) -> balance, may be negative
--   5 inbox     list  the sequenced push frames (msgpack), newest last: past inbox_max entries
--                     it is trimmed to the newest inbox_keep (a trim every few pushes, not on
--                     each one); the `balance` push is a state push (seq 0), published only
--   6 players   set   player ids of this bucket that own a wallet
--   7 reply     string "<balance>:<reply body>": the cached reply of a request id (ignored
--                     when reply_body == ""), one SET with its expiry. The body is a msgpack
--                     map of 3 whose first two pairs (op, result) the caller packs; this
--                     script appends the third, entry_seq: the wallet's journal seq the
--                     balance is as of (a reader of before takes op and result, as it did)
--   8 channel   pub/sub channel of the player (not a key; declared for the slot check)
--   9 holds     hash  checkout order id -> "pending|<coins>|<expires_ms>", "posted|<ms>" or
--                     "voided|<ms>" (tombstones answer repeats; compaction prunes old ones)
--  10 outbox    list  credit orders for players in other slots (steal, water), see outbox.py
--  11 stats     hash  <source>:ordered coins ever put in the outbox, <source>:reversed coins
--                     of its credits reversed since, for the in-flight invariant
--  12 timers    zset  timers of the bucket scored by due ms, see timers.py
--  13 records   hash  platform records (an order's reward lines and refunds), compare-and-set
-- Keys 10-13 come only up to the last one the commit uses (orders: 11, counts: 11, timers:
-- 12, records: 13; apply in server/ledger/commit.py): each key is an argument Redis parses
-- and the server packs, and a credited sign-in uses none of them.
-- ARGV:
--   1 the header, read by one struct.unpack (HEADER below; packed by commit_header in
--     server/ledger/commit.py): seventeen little-endian 64-bit integers, then five strings,
--     each after its length as a 32-bit integer (a string arrives as one argument, its
--     numbers as numbers, and no table is built: one argument costs Redis far less than
--     twenty-one, and a struct far less than a msgpack array, docs/benchmark.md):
--    expected_ver       -1 skips the version check (platform and operator credits)
--    n_fields           state fields to write
--    n_transfers
--    n_pushes           the sequenced pushes (the `balance` push is made here, with seq 0)
--    n_orders           outbox orders
--    reply_ttl_s        seconds
--    inbox_max          entries the inbox may hold before a trim
--    n_timers           timers to arm (or move: the member names the timer)
--    n_holds            checkout hold operations
--    today              YYYYMMDD, the business day: batches whose last valid day is before
--                       it expire to sink:expire in this commit; 0 = no expiry check
--    debt_add           coins a refund could not take back, owed from the next credits
--    n_records          records to compare-and-set
--    n_counts           stats counters to add to
--    inbox_keep         entries a trim keeps (<= inbox_max): every push after inbox_keep
--                       ones is replayable
--    seen               1: the caller decided on a snapshot it remembered, not one it
--                       just read (server/pipeline.py, Seen): the state must still carry
--                       seen_stamp (else CONFLICT) and the request id no reply (else
--                       REPLAYED, found by the SET NX that stores this commit's reply);
--                       0: expected_ver alone, as after a fresh load
--    asked_by_socket    1: a request of one of the player's own sockets, which reads the
--                       balance in its reply: the `balance` push is published only when
--                       the state's `sk` (the player's live sockets when the last one
--                       opened, socket_lease.lua) is not 1; 0: always published
--    now_ms             epoch milliseconds: the ts of every journal entry; pending holds
--                       whose expires_ms <= now_ms are void from this commit on (a number,
--                       not text: no strtod, and no string made, on every commit)
--    then the strings:
--    reply_body         msgpack reply without `balance`: a map header of 3, then op and
--                       result (entry_seq is appended here); "" = no request id to remember
--    player_id          added to the bucket's players set on the first posting
--    publish            "PUBLISH", or "SPUBLISH" on Redis Cluster (sharded pub/sub)
--    seen_stamp         the state's `vs` the caller remembered ("" = none)
--    stamp              written as the state's `vs` with the fields ("" = leave it): who
--                       wrote this version, so a write the store lost never passes for the
--                       next one
--   then n_fields     x (field, value)
--   then n_transfers  x one struct (TRANSFER below; Transfer.packed in
--                        server/ledger/ledger.py): kind "c"|"d" (one byte), amount coins > 0,
--                        batch YYYYMMDD or 0, 1 if the entry stores a ref (0: the id's last
--                        `:` field is its ref, stored_ref in server/ledger/ledger.py), the
--                        account code or -1 (server/ledger/accounts.py, stored in the
--                        entry), then the id, the account and the ref as the header's strings
--   then n_pushes     x (type, data as a msgpack map)
--   then n_orders     x (source, amount coins > 0, order as msgpack)
--   then n_timers     x (member, due_ms)
--   then n_holds      x (op "reserve"|"post"|"void", order id, coins, expires_ms)
--   then n_records    x (field, expected value or "" for absent, new value; new == expected
--                     only checks)
--   then n_counts     x (stats field, integer to add)
-- Returns one string, packed by struct (ANSWER below; commit_answer in
-- server/ledger/commit.py reads it): balance_coins, ver, pseq, held_coins, debt_coins and
-- entry_seq as little-endian 64-bit integers, the status after its length (a 32-bit
-- integer), then per extra push how many subscribers got it (0: no socket anywhere), a
-- 64-bit integer each. Not a table: Redis converts a table's reply field by field, looking
-- each table up for `err`, `ok` and five more names first (a tenth of a credit's logic).
-- entry_seq is the wallet's journal seq after the commit (before it, when refused): the
-- entry the balance is as of, which the `balance` push carries too.
-- status is "ok", "exists" (every transfer and hold op was already done: nothing written),
-- "CONFLICT" (version or stamp moved: reload and retry), "REPLAYED" (the header's seen 1 and the
-- request id has a stored reply: read it), "TRANSFER_MISMATCH" (an id reused with another
-- kind/amount/account, or an id this script makes taken already), "INSUFFICIENT_FUNDS" (a
-- debit or hold larger than the coins not held), "HOLD_NOT_FOUND", "HOLD_POSTED",
-- "HOLD_VOIDED", "HOLD_MISMATCH", "HOLD_EXPIRED" (a hold op that its order's state refuses),
-- "HOLDS_FULL" (a reserve past HOLDS_PENDING_MAX pending holds of the player),
-- "RECORD_CONFLICT" (a record changed since it was read: reload and retry) or "BAD_TRANSFER"
-- (malformed input, a transfer id in the names this script makes, or a state field named
-- as one of the wallet's or the counters': a bug in the caller).
-- Only "ok" writes anything (a refused HSETNX below deletes the reply its SET NX wrote).
--
-- Every check runs before the first write: Redis does not roll back a failed script. The
-- last two are writes: on a remembered snapshot the SET NX of the request id's reply, and
-- for a commit of one credit that makes no entry of its own (a sign-in's) the HSETNX of
-- its transfer id, which takes the reply's SET back when it refuses.
-- One file of ~630 lines on purpose: the line between the checks and the writes ("Writes.
-- Nothing below may fail") is what makes a commit safe, and it is audited in one place;
-- split into parts joined at load time, a reader would have to rebuild it in their head.
-- No game rule lives here: amounts, batches and ids come from game_rules via the shell;
-- the script only keeps the books (FIFO by expiry, holds, debt first, expiry by date).
-- The ids it makes itself live in names no caller may use: `debt:<credit id>` (or
-- `debt#<sha1 of it>` when that would pass ID_BYTES_MAX) and `expire:<YYYYMMDD>:<seq>`.

local ID_BYTES_MAX = 200  -- TRANSFER_ID_BYTES_MAX in server/ledger/ledger.py
local HOLDS_PENDING_MAX = 64  -- HOLDS_PENDING_MAX in server/ledger/commit.py
-- The codes of the accounts this script posts to by itself (server/ledger/accounts.py).
local SCRIPT_ACCOUNTS = {['sink:expire'] = 14, clawback = 15}
-- The hash's fields that are not the rule's (besides the ck_ prefix), none longer than 4
-- bytes: a string searched only for a name that short, where a table would be built on
-- every call.
local BOOK_FIELDS = ',ver,pseq,vs,bal,seq,head,held,debt,bt,hx,sk,'
-- The header's and a transfer's layout (see the header), as struct formats.
local HEADER = '<i8i8i8i8i8i8i8i8i8i8i8i8i8i8i8i8i8i4c0i4c0i4c0i4c0i4c0'
local TRANSFER = '<c1i8i8Bi8i4c0i4c0i4c0'
local ANSWER = '<i8i8i8i8i8i8i4c0'
local expected_ver, n_fields, n_transfers, n_pushes, n_orders, reply_ttl_s, inbox_max,
  n_timers, n_holds, today, debt_add, n_records, n_counts, inbox_keep, seen_flag,
  asked_by_socket, now_ms, reply_body, player_id, publish, seen_stamp, stamp =
  struct.unpack(HEADER, ARGV[1])
local seen = seen_flag == 1

local fields_at = 1
local transfers_at = fields_at + 2 * n_fields
local pushes_at = transfers_at + n_transfers
local orders_at = pushes_at + 2 * n_pushes
local timers_at = orders_at + 3 * n_orders
local holds_at = timers_at + 2 * n_timers
local records_at = holds_at + 4 * n_holds
local counts_at = records_at + 3 * n_records

-- One read, by name: the rule's components are not read (the batches and the hold index
-- are one field each so that a commit can name every field it needs).
local got = redis.call('HMGET', KEYS[1], 'ver', 'pseq', 'vs', 'bal', 'seq', 'head', 'held',
  'debt', 'ck_seq', 'bt', 'hx', 'sk')
-- An absent field is 0 without a tonumber (a strtod each: most wallets hold no debt or holds).
local ver, pseq = got[1] and tonumber(got[1]) or 0, got[2] and tonumber(got[2]) or 0
local bal, seq = got[4] and tonumber(got[4]) or 0, got[5] and tonumber(got[5]) or 0
local vs, head = got[3] or '', got[6] or ''
local held, debt = got[7] and tonumber(got[7]) or 0, got[8] and tonumber(got[8]) or 0
local ck_seq = got[9] and tonumber(got[9]) or 0
local batches = {}  -- {day, coins}, oldest first, as `bt` keeps them
for day, coins in string.gmatch(got[10] or '', '(%d+)=(%d+)') do
  batches[#batches + 1] = {tonumber(day), tonumber(coins)}
end
local pending, indexed = {}, 0  -- order -> {coins, expires_ms}: the wallet's hold index
if got[11] then
  for order, p in pairs(cmsgpack.unpack(got[11])) do
    pending[order] = p
    indexed = indexed + p[1]
  end
end
local balance_before, held_before, debt_before = bal, held, debt
local touched = false  -- whether this commit moves coins of a batch: `bt` is rewritten

-- The answer (see the header); `receivers` nil or a list, one count per extra push.
local function answer(status, balance, version, push_seq, held_coins, debt_coins, entry_seq,
    receivers)
  if not receivers then
    return struct.pack(ANSWER, balance, version, push_seq, held_coins, debt_coins, entry_seq,
      #status, status)
  end
  return struct.pack(ANSWER .. string.rep('i8', #receivers), balance, version, push_seq,
    held_coins, debt_coins, entry_seq, #status, status, unpack(receivers))
end

local function refuse(status)
  return answer(status, balance_before, ver, 0, held_before, debt_before, seq)
end

if expected_ver >= 0 and ver ~= expected_ver then
  return refuse('CONFLICT')
end
if seen and vs ~= seen_stamp then return refuse('CONFLICT') end
if not today or not debt_add or debt_add < 0 or debt_add % 1 ~= 0 then
  return refuse('BAD_TRANSFER')
end
local keys_needed = 9
if n_orders > 0 or n_counts > 0 then keys_needed = 11 end
if n_timers > 0 then keys_needed = 12 end
if n_records > 0 then keys_needed = 13 end
if #KEYS < keys_needed then return refuse('BAD_TRANSFER') end
for r = 0, n_records - 1 do
  local current = redis.call('HGET', KEYS[13], ARGV[records_at + 1 + 3 * r]) or ''
  if current ~= ARGV[records_at + 2 + 3 * r] then
    return refuse('RECORD_CONFLICT')
  end
end
-- The rule's fields share the hash with the wallet's: a rule field never takes a name the
-- books or the counters use.
for i = 0, n_fields - 1 do
  local f = ARGV[fields_at + 1 + 2 * i]
  local c1, c2, c3 = string.byte(f, 1, 3)
  if (#f <= 4 and string.find(BOOK_FIELDS, ',' .. f .. ',', 1, true))
      or (c1 == 99 and c2 == 107 and c3 == 95) then
    return refuse('BAD_TRANSFER')
  end
end
for c = 0, n_counts - 1 do
  local by = tonumber(ARGV[counts_at + 2 + 2 * c])
  if not by or by % 1 ~= 0 then return refuse('BAD_TRANSFER') end
end

-- Holds past their time are void from now on, whether or not their timer fired. The index
-- must add up to `held`; holds from before it existed are read from the holds hash once.
local reindex = indexed ~= held
if reindex then
  pending, held = {}, 0
  local orders = redis.call('HGETALL', KEYS[9])
  for i = 1, #orders, 2 do
    local coins, expires = string.match(orders[i + 1], '^pending|(%d+)|(%d+)$')
    if coins then
      pending[orders[i]] = {tonumber(coins), tonumber(expires)}
      held = held + tonumber(coins)
    end
  end
end
local hold_writes = {}  -- order -> new value of the holds hash
local lapsed = {}  -- order -> true: voided by its time in this commit
for order, p in pairs(pending) do
  if p[2] <= now_ms then
    held = held - p[1]
    hold_writes[order] = 'voided|' .. string.format('%d', now_ms)
    lapsed[order] = true
    pending[order] = nil
  end
end

-- Plan everything against copies of the balances (checks only, no writes).
local plan = {}
-- Whether a transfer id already in txids was posted with this kind, amount and account.
-- Format 2 keeps only the entry's seq: the entry is in the journal, since compaction writes
-- the format-1 value of every id whose entry it archives (the account by its code there).
local function same_posting(stored, kind, amount, signed, account, stored_account)
  local at = tonumber(stored)
  if not at then
    local kind_amount = kind .. '|' .. amount .. '|'
    local posted = string.match(stored, '^[cd]|%d+|(.*)|%d+$')
    return string.sub(stored, 1, #kind_amount) == kind_amount
      and (posted == account or posted == tostring(stored_account))
  end
  if at <= ck_seq then return false end
  local raw = redis.call('LINDEX', KEYS[2], at - ck_seq - 1)
  if not raw then return false end
  local e = cmsgpack.unpack(raw)
  return e[1] == at and (e[3] == stored_account or e[3] == account) and e[4] == signed
end
local function spend(amount)
  -- Take `amount` from the batches that expire first; the list of batches moved.
  local moved, left = {}, amount
  for _, b in ipairs(batches) do
    if left > 0 and b[2] > 0 then
      local take = math.min(left, b[2])
      b[2] = b[2] - take
      left = left - take
      touched = true
      moved[#moved + 1] = b[1]
      moved[#moved + 1] = -take
    end
  end
  return moved
end

-- Expiry first, against the holds as they stood: batches whose last valid day has passed go
-- to the expiry sink, except coins that a checkout hold locks. A post spends the oldest
-- batches first, so the held coins are the oldest ones: a post in this very commit (after
-- midnight of their batch) still finds them; after a void they expire with the next touch.
local expired = nil  -- the ids of this commit's expiry entries, when it expires a batch
if today > 0 then
  local locked = held
  for _, b in ipairs(batches) do
    local kept = math.min(locked, b[2])
    locked = locked - kept
    if b[1] < today and b[2] > kept then
      local gone = b[2] - kept
      b[2] = b[2] - gone
      bal = bal - gone
      touched = true
      local id = 'expire:' .. b[1] .. ':' .. (seq + #plan + 1)
      expired = expired or {}
      expired[#expired + 1] = id  -- read with the transfers' ids below: taken, refused
      -- The entry keeps its ref: the id's last field is a seq, never 'expired' (a ref that
      -- repeats it is stored as false, stored_ref in server/ledger/ledger.py).
      plan[#plan + 1] = {id, gone, 'sink:expire', -gone, {b[1], -gone}, 'expired',
        SCRIPT_ACCOUNTS['sink:expire']}
    end
  end
end

-- An expiry's id is new unless the store lost a write (the seq in it went back): taken,
-- it is refused, never overwritten. On the midnight after 30 June or 31 December nearly
-- every credit also expires a batch, so the transfers' ids are read with the expiries' in
-- one command (read_ids, by the transfers' order); other commits read each id as they go.
local read_ids = nil
if expired then
  local ids = {}
  for t = 1, n_transfers do
    ids[t] = select(6, struct.unpack(TRANSFER, ARGV[transfers_at + t]))
  end
  for e = 1, #expired do ids[n_transfers + e] = expired[e] end
  read_ids = redis.call('HMGET', KEYS[3], unpack(ids))
  for e = 1, #expired do
    if read_ids[n_transfers + e] then return refuse('TRANSFER_MISMATCH') end
  end
end

-- Holds: reserve locks coins (not a posting); post and void release them.
local fresh_holds = 0
for h = 0, n_holds - 1 do
  local op, order = ARGV[holds_at + 1 + 4 * h], ARGV[holds_at + 2 + 4 * h]
  local coins, expires_ms = tonumber(ARGV[holds_at + 3 + 4 * h]), ARGV[holds_at + 4 + 4 * h]
  local now_state = hold_writes[order] or redis.call('HGET', KEYS[9], order)
  local word = now_state and string.match(now_state, '^(%a+)')  -- "posted|<ms>" -> "posted"
  local pending_coins = word == 'pending' and tonumber(string.match(now_state, '^pending|(%d+)|'))
  if op == 'reserve' then
    if not coins or coins <= 0 or coins % 1 ~= 0 or not tonumber(expires_ms) then
      return refuse('BAD_TRANSFER')
    end
    -- A hold is (order, coins): the first reserve fixes its expiry, a repeat keeps it.
    if pending_coins == coins then
      -- the same reserve again: nothing to do
    elseif word == 'posted' then return refuse('HOLD_POSTED')
    elseif word == 'voided' then return refuse('HOLD_VOIDED')
    elseif now_state then return refuse('HOLD_MISMATCH')
    else
      if coins > bal - held then return refuse('INSUFFICIENT_FUNDS') end
      local count = 0
      for _ in pairs(pending) do count = count + 1 end
      if count >= HOLDS_PENDING_MAX then return refuse('HOLDS_FULL') end
      held = held + coins
      hold_writes[order] = 'pending|' .. coins .. '|' .. expires_ms
      pending[order] = {coins, tonumber(expires_ms)}
      fresh_holds = fresh_holds + 1
    end
  elseif op == 'post' or op == 'void' then
    local done = (op == 'post') and 'posted' or 'voided'
    if op == 'post' and lapsed[order] then return refuse('HOLD_EXPIRED')
    elseif word == done then
      -- already posted / voided; a void of a hold that lapsed in this commit is its void
      if lapsed[order] then fresh_holds = fresh_holds + 1; lapsed[order] = false end
    elseif word == 'posted' then return refuse('HOLD_POSTED')
    elseif word == 'voided' then return refuse('HOLD_VOIDED')
    elseif not pending_coins then return refuse('HOLD_NOT_FOUND')
    else
      if op == 'post' and coins and coins > pending_coins then return refuse('HOLD_MISMATCH') end
      held = held - pending_coins
      hold_writes[order] = done .. '|' .. string.format('%d', now_ms)
      pending[order] = nil
      fresh_holds = fresh_holds + 1
    end
  else
    return refuse('BAD_TRANSFER')
  end
end

local fresh = 0
-- A commit of one credit that makes no entry of its own (no expiry, no debt to repay, no
-- hold; a sign-in's) does not read its id: the write that records it checks it (unread).
local lone_credit = n_transfers == 1 and n_holds == 0 and not expired and debt == 0
local unread = nil
-- Built only when needed: a sign-in (one transfer, no debt) allocates neither.
local in_call = n_transfers > 1 and {} or nil  -- the ids of this call, against repeats
local credits = debt > 0 and {} or nil  -- {id, coins} of each new credit: they repay the debt
for t = 1, n_transfers do
  -- One argument per transfer, its numbers as numbers (see the header).
  local kind, amount, batch, has_ref, code, id, account, ref =
    struct.unpack(TRANSFER, ARGV[transfers_at + t])
  if has_ref == 0 then ref = false end
  if id == '' or account == '' then return refuse('BAD_TRANSFER') end
  local stored_account = code >= 0 and code or account
  local made_here = string.sub(id, 1, 5) == 'debt:' or string.sub(id, 1, 5) == 'debt#'
    or string.sub(id, 1, 7) == 'expire:'
  if (in_call and in_call[id]) or made_here or amount <= 0 or amount % 1 ~= 0
      or (kind ~= 'c' and kind ~= 'd') or (kind == 'c' and batch <= 0) then
    return refuse('BAD_TRANSFER')
  end
  if in_call then in_call[id] = true end
  local stored = nil
  if read_ids then
    stored = read_ids[t]
  elseif lone_credit and kind == 'c' then
    unread = id  -- checked by the write that records it (HSETNX, at the first writes)
  else
    stored = redis.call('HGET', KEYS[3], id)
  end
  if stored then
    local signed = kind == 'c' and amount or -amount
    if not same_posting(stored, kind, amount, signed, account, stored_account) then
      return refuse('TRANSFER_MISMATCH')
    end
  else
    fresh = fresh + 1
    if kind == 'c' then
      bal = bal + amount
      local found = false
      touched = true
      for _, b in ipairs(batches) do
        if b[1] == batch then b[2] = b[2] + amount; found = true end
      end
      if not found then
        batches[#batches + 1] = {batch, amount}
        table.sort(batches, function(a, b) return a[1] < b[1] end)
      end
      plan[#plan + 1] = {id, amount, account, amount, {batch, amount}, ref, stored_account}
      if credits then credits[#credits + 1] = {id, amount} end
    else
      if amount > bal - held then
        return refuse('INSUFFICIENT_FUNDS')
      end
      bal = bal - amount
      plan[#plan + 1] = {id, amount, account, -amount, spend(amount), ref, stored_account}
    end
  end
end

-- Debt: new credits repay it first (a refund could not take back coins already spent).
for c_at = 1, credits and #credits or 0 do
  local c = credits[c_at]
  local repay = math.min(debt, c[2])
  if repay > 0 then
    debt = debt - repay
    local id = 'debt:' .. c[1]
    if #id > ID_BYTES_MAX then id = 'debt#' .. redis.sha1hex(c[1]) end
    -- An id this script makes that is in txids already: refused, never overwritten.
    if redis.call('HEXISTS', KEYS[3], id) == 1 then return refuse('TRANSFER_MISMATCH') end
    -- How the entry stores its ref (stored_ref in server/ledger/ledger.py).
    local ref = 'debt repaid'
    if ref == string.match(id, '^.+:([^:]*)$') then ref = false end
    bal = bal - repay
    plan[#plan + 1] = {id, repay, 'clawback', -repay, spend(repay), ref,
      SCRIPT_ACCOUNTS.clawback}
  end
end
debt = debt + debt_add

for o = 0, n_orders - 1 do
  local amount = tonumber(ARGV[orders_at + 2 + 3 * o])
  if not amount or amount <= 0 or amount % 1 ~= 0 then
    return refuse('BAD_TRANSFER')
  end
end
for t = 0, n_timers - 1 do
  if not tonumber(ARGV[timers_at + 2 + 2 * t]) then
    return refuse('BAD_TRANSFER')
  end
end

if (n_transfers > 0 or n_holds > 0) and fresh == 0 and fresh_holds == 0 then
  return answer('exists', balance_before, ver, 0, held_before, debt_before, seq)
end

-- Writes. Nothing below may fail but the first two. The version guards the state fields only:
-- a push or a credit from elsewhere must not make a player's next rule op retry.
-- On a remembered snapshot the request id's stored reply is the last check, made by the
-- write that stores this commit's reply (NX: when the request was done already, nothing
-- is written). A refusal above needs no such check: it sends the caller to a load, which
-- finds the reply.
local reply_stored = false
local entry_seq = seq + #plan  -- the wallet's seq once the plan is posted
if reply_body ~= '' then
  reply_body = string.format('%d:', bal) .. reply_body .. '\169entry_seq'
    .. cmsgpack.pack(entry_seq)
end
if seen and reply_body ~= '' then
  if not redis.call('SET', KEYS[7], reply_body, 'NX', 'EX', reply_ttl_s) then
    return refuse('REPLAYED')
  end
  reply_stored = true
end
-- The lone credit's id, not read above, is checked by the write that records it: one
-- command where a read and a write were two. Taken (a store that lost the state's write
-- and kept the id, or a repeat of the credit), the reply stored just above is taken back
-- and the answer is the one a read would have given; nothing else is written.
if unread and redis.call('HSETNX', KEYS[3], unread, seq + 1) == 0 then
  if reply_stored then redis.call('DEL', KEYS[7]) end
  local p = plan[1]  -- {id, amount, account, amount, batch, ref, account as stored}
  if same_posting(redis.call('HGET', KEYS[3], unread), 'c', p[2], p[2], p[3], p[7]) then
    return answer('exists', balance_before, ver, 0, held_before, debt_before, seq)
  end
  return refuse('TRANSFER_MISMATCH')
end
-- The rule's fields and the wallet's share the hash: one HSET writes both. Its arguments'
-- table is made at its usual size at once (the version and stamp, a rule field, the
-- wallet's bal, seq, head and bt): a table grown one pair at a time is reallocated at each
-- power of two (docs/benchmark.md: allocation and collection were a sixth of a credit).
local state_args = {false, false, false, false, false, false, false, false, false, false,
  false, false, false, false, false, false}
local n_state = 0
local function set_field(f, v)
  state_args[n_state + 1], state_args[n_state + 2] = f, v
  n_state = n_state + 2
end
if n_fields > 0 then
  ver = ver + 1
  set_field('ver', ver)
  if stamp ~= '' then set_field('vs', stamp) end
  for i = 0, n_fields - 1 do
    set_field(ARGV[fields_at + 1 + 2 * i], ARGV[fields_at + 2 + 2 * i])
  end
end

local wallet_gone = nil  -- the wallet's fields to delete, when there are some
if #plan > 0 then
  local first_posting = seq == 0
  local running = balance_before
  -- A credit posts one entry: its entry and id go to RPUSH and HSET as they are, no table.
  local entries = #plan > 1 and {} or nil
  local txids = entries and {} or nil
  local entry = nil
  local ts_s = math.floor(now_ms / 1000)
  for _, p in ipairs(plan) do
    -- p = {id, amount, account, signed amount, batches moved, ref, account as stored}
    seq = seq + 1
    running = running + p[4]
    -- Format 2: the id lives in txids only; a ref that repeats the id's last field is
    -- `false` (p[6] comes so); the entry keeps 32 bits of the head before it, the head
    -- covers the id.
    local tag = 0
    if head ~= '' then tag = tonumber(string.sub(head, 1, 8), 16) end
    entry = cmsgpack.pack({seq, ts_s, p[7], p[4], running, p[5], p[6], tag})
    head = redis.sha1hex(head .. cmsgpack.pack(p[1]) .. entry)
    if entries then
      entries[#entries + 1] = entry
      txids[#txids + 1] = p[1]
      txids[#txids + 1] = seq
    end
    redis.call('HINCRBY', KEYS[4], p[3], -p[4])
  end
  if entries then
    redis.call('RPUSH', KEYS[2], unpack(entries))
    redis.call('HSET', KEYS[3], unpack(txids))
  else
    redis.call('RPUSH', KEYS[2], entry)
    if not unread then redis.call('HSET', KEYS[3], plan[1][1], seq) end
  end
  set_field('bal', bal)
  set_field('seq', seq)
  set_field('head', head)
  if touched then
    local kept = nil  -- the `bt` text; a wallet holds a batch or two, so no table to concat
    for _, b in ipairs(batches) do
      if b[2] > 0 then
        local batch_text = string.format('%d=%d', b[1], b[2])
        kept = kept and (kept .. ',' .. batch_text) or batch_text
      end
    end
    if kept then set_field('bt', kept) else wallet_gone = {'bt'} end
  end
  if first_posting then
    redis.call('SADD', KEYS[6], player_id)
  end
end
if held ~= held_before or reindex then
  set_field('held', held)
end
if debt ~= debt_before then
  set_field('debt', debt)
end
local holds_moved = reindex
for order, value in pairs(hold_writes) do
  redis.call('HSET', KEYS[9], order, value)
  holds_moved = true
end
if holds_moved then
  if next(pending) then
    set_field('hx', cmsgpack.pack(pending))
  else
    wallet_gone = wallet_gone or {}
    wallet_gone[#wallet_gone + 1] = 'hx'
  end
end
if wallet_gone then
  redis.call('HDEL', KEYS[1], unpack(wallet_gone))
end
for r = 0, n_records - 1 do
  local at = records_at + 3 * r
  if ARGV[at + 3] ~= ARGV[at + 2] then
    redis.call('HSET', KEYS[13], ARGV[at + 1], ARGV[at + 3])
  end
end

-- The asking socket reads the balance in its reply; a player with no other socket (`sk`
-- 1: one live when the newest opened, and any opened since would have written it) has
-- nobody to read the push. `sk` only ever counts a socket too many (one closed since),
-- which publishes as before.
if #plan > 0 and not (asked_by_socket == 1 and got[12] == '1') then
  -- {push: "balance", seq: 0, data: {balance: bal, delta: the change, entry_seq: seq}}
  -- with the keys as bytes: cmsgpack packs a table several times slower than the three
  -- numbers (bench.commit_cost --instructions). A state push: the newest entry_seq wins,
  -- a resume sends the balance as it then is (server/transport/ws.py), so no inbox entry
  -- and no push seq. Seq 0 rather than none: a client of before drops it as a push it has
  -- seen, where a missing seq would break its cursor. Built only when published.
  redis.call(publish, KEYS[8], '\131\164push\167balance\163seq\000\164data\131\167balance'
    .. cmsgpack.pack(bal) .. '\165delta' .. cmsgpack.pack(bal - balance_before)
    .. '\169entry_seq' .. cmsgpack.pack(seq))
end
local receivers = nil
if n_pushes > 0 then
  -- {push: kind, seq: pseq, data: data} in msgpack: the map's header and its three keys
  -- are written as bytes (a fixmap of 3; fixstrs of 4, 3 and 4), a cmsgpack call less each.
  local push_frames = {}
  receivers = {}
  for i = 1, n_pushes do
    pseq = pseq + 1
    push_frames[i] = '\131\164push' .. cmsgpack.pack(ARGV[pushes_at - 1 + 2 * i])
      .. '\163seq' .. cmsgpack.pack(pseq) .. '\164data' .. ARGV[pushes_at + 2 * i]
    receivers[i] = redis.call(publish, KEYS[8], push_frames[i])
  end
  if redis.call('RPUSH', KEYS[5], unpack(push_frames)) > inbox_max then
    redis.call('LTRIM', KEYS[5], -inbox_keep, -1)
  end
  set_field('pseq', pseq)
end
if n_state > 0 then
  redis.call('HSET', KEYS[1], unpack(state_args, 1, n_state))
end

for o = 0, n_orders - 1 do
  local source, amount = ARGV[orders_at + 1 + 3 * o], tonumber(ARGV[orders_at + 2 + 3 * o])
  redis.call('RPUSH', KEYS[10], ARGV[orders_at + 3 + 3 * o])
  redis.call('HINCRBY', KEYS[11], source .. ':ordered', amount)
end
for c = 0, n_counts - 1 do
  redis.call('HINCRBY', KEYS[11], ARGV[counts_at + 1 + 2 * c], tonumber(ARGV[counts_at + 2 + 2 * c]))
end
for t = 0, n_timers - 1 do
  redis.call('ZADD', KEYS[12], tonumber(ARGV[timers_at + 2 + 2 * t]), ARGV[timers_at + 1 + 2 * t])
end

if reply_body ~= '' and not reply_stored then
  redis.call('SET', KEYS[7], reply_body, 'EX', reply_ttl_s)
end

if n_pushes == 0 then pseq = 0 end
return answer('ok', bal, ver, pseq, held, debt, seq, receivers)
