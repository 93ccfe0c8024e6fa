-- mall_settle.lua: settle a mall item's stock reservation (confirm: the unit is sold;
-- release: the unit goes back on sale), or lease the overdue ones to a sweep.
--
-- KEYS (the item's hash tag {mall:<item>}; see mall_reserve.lua for their layout):
--   1 stock   hash  sold, reserved, r:<order id> "<player>|<deadline_ms>"
--   2 buyers  hash  player -> units reserved or sold to them
--   3 due     zset  order id -> epoch ms it is next looked at
--   4 done    zset  order id -> epoch ms it was settled
-- ARGV:
--   1 now_ms     epoch ms
--   2 op         "confirm", "release" or "claim"
--   3 order_id   the reservation (ignored by claim)
--   4 claim_max  claim: overdue reservations leased at most
--   5 lease_ms   claim: ms a leased reservation is left to its repairer
--   6 keep_ms    claim: settled order ids older than this are pruned from `done`
-- Returns, for confirm and release, {status}: "ok", "done" (this order was settled
-- already: nothing written; the caller reads the player's record to know how) or
-- "NOT_FOUND" (never reserved); for claim, {"ok", order, player, order, player, ...}.
-- "BAD_ARGS" for malformed input. Every check runs before the first write.

local now, op, order = tonumber(ARGV[1]), ARGV[2], ARGV[3]
if not now then return {'BAD_ARGS'} end

if op == 'claim' then
  local claim_max, lease_ms, keep_ms = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  if not (claim_max and lease_ms and keep_ms) then return {'BAD_ARGS'} end
  local overdue = redis.call('ZRANGE', KEYS[3], '-inf', now, 'BYSCORE', 'LIMIT', 0, claim_max)
  local owners = {}
  if #overdue > 0 then
    local fields = {}
    for i, o in ipairs(overdue) do fields[i] = 'r:' .. o end
    owners = redis.call('HMGET', KEYS[1], unpack(fields))
  end
  -- Writes.
  local reply = {'ok'}
  for i, o in ipairs(overdue) do
    if owners[i] then
      redis.call('ZADD', KEYS[3], 'XX', now + lease_ms, o)
      reply[#reply + 1] = o
      reply[#reply + 1] = string.match(owners[i], '^(.*)|%d+$')
    else
      redis.call('ZREM', KEYS[3], o)
    end
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - keep_ms)
  return reply
end

if op ~= 'confirm' and op ~= 'release' then return {'BAD_ARGS'} end
local value = redis.call('HGET', KEYS[1], 'r:' .. order)
if not value then
  if redis.call('ZSCORE', KEYS[4], order) then return {'done'} end
  return {'NOT_FOUND'}
end
local player = string.match(value, '^(.*)|%d+$')

-- Writes. Nothing below may fail.
redis.call('HDEL', KEYS[1], 'r:' .. order)
redis.call('HINCRBY', KEYS[1], 'reserved', -1)
if op == 'confirm' then
  redis.call('HINCRBY', KEYS[1], 'sold', 1)
elseif redis.call('HINCRBY', KEYS[2], player, -1) <= 0 then
  redis.call('HDEL', KEYS[2], player)
end
redis.call('ZREM', KEYS[3], order)
redis.call('ZADD', KEYS[4], now, order)
return {'ok'}
