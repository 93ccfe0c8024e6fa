-- one_hash_min.lua (the bench's, not the server's): one_hash_floor.lua's commands with the
-- least logic a credit commit in that layout must run in Lua to keep the books as commit.lua
-- keeps them: read its arguments (two msgpack arrays), check the version, the stamp, the
-- request id and the transfer id, add the coins to their expiry batch, pack the journal
-- entry (format 2), chain its sha1, build the `balance` push and the stored reply. No holds,
-- debt, expiry, records, orders or timers, and no checks of the arguments' types: a lower
-- bound of what a one-hash commit.lua would cost Redis, not a script to serve with.
--
-- KEYS: as one_hash_floor.lua's
-- ARGV: 1 header [now_ms (string), expected_ver, seen_stamp, stamp, request id, reply body,
--         field name, field value, publish command]
--       2 transfer [id, kind, amount, account, batch YYYYMMDD, ref (false: the id's), code]
-- Returns: {'ok', balance, ver} or {'CONFLICT'} / {'REPLAYED'} / {'exists'}

local h = cmsgpack.unpack(ARGV[1])
local t = cmsgpack.unpack(ARGV[2])
local id, amount, batch = t[1], t[3], t[5]
local txid, reply_field = 't:' .. id, 'r:' .. h[5]
local got = redis.call('HMGET', KEYS[1], 'ver', 'pseq', 'vs', 'bal', 'seq', 'head', 'held',
  'debt', 'ck_seq', 'batches', 'holds', txid, reply_field)
local ver = tonumber(got[1] or '0')
if ver ~= h[2] or (got[3] or '') ~= h[3] then return {'CONFLICT'} end
if got[13] then return {'REPLAYED'} end
if got[12] then return {'exists'} end
local bal, seq = tonumber(got[4] or '0'), tonumber(got[5] or '0')
local head = got[6] or ''
local batches = got[10] and cmsgpack.unpack(got[10]) or {}
local found = false
for i = 1, #batches, 2 do
  if batches[i] == batch then batches[i + 1] = batches[i + 1] + amount; found = true end
end
if not found then
  batches[#batches + 1] = batch
  batches[#batches + 1] = amount
end

-- Writes.
bal, seq, ver = bal + amount, seq + 1, ver + 1
local tag = 0
if head ~= '' then tag = tonumber(string.sub(head, 1, 8), 16) end
local entry = cmsgpack.pack({seq, math.floor(tonumber(h[1]) / 1000), t[7], amount, bal,
  {batch, amount}, t[6], tag})
head = redis.sha1hex(head .. cmsgpack.pack(id) .. entry)
local push = '\131\164push\167balance\163seq\000\164data\131\167balance' .. cmsgpack.pack(bal)
  .. '\165delta' .. cmsgpack.pack(amount) .. '\169entry_seq' .. cmsgpack.pack(seq)
redis.call('HINCRBY', KEYS[3], t[4], -amount)
redis.call('RPUSH', KEYS[2], entry)
redis.call('HSET', KEYS[1], 'ver', ver, 'vs', h[4], h[7], h[8], 'bal', bal,
  'seq', seq, 'head', head, 'batches', cmsgpack.pack(batches), txid, seq,
  reply_field, bal .. ':' .. h[6])
redis.call(h[9], KEYS[4], push)
return {'ok', bal, ver}
