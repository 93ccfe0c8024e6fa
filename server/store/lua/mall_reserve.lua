-- mall_reserve.lua: take one unit of a mall item's stock for an order (a reservation), and
-- lease the reservations past their deadline to the caller, who settles them (the touch
-- that repairs what a crash left: see server/ops/mall_stock.py).
--
-- KEYS (all under the item's own hash tag {mall:<item>}, one slot, shared by all players):
--   1 stock   hash  sold (units confirmed), reserved (units reserved, not yet settled),
--                   r:<order id> "<player>|<deadline_ms>" per open reservation
--   2 buyers  hash  player -> units reserved or sold to them (the per-player-ever limit)
--   3 due     zset  order id -> epoch ms when its reservation is next looked at (its
--                   deadline, then the end of each repair lease)
--   4 done    zset  order id -> epoch ms it was confirmed or released (a settled order is
--                   never reserved again; pruned by mall_settle.lua `claim`)
-- ARGV:
--   1 now_ms           epoch ms
--   2 order_id         the reservation's id (an order id: one unit per order)
--   3 player           the buyer
--   4 deadline_ms      epoch ms: past it, the reservation is repaired by the next touch or
--                      the sweep (confirmed if the player's order stands, else released)
--   5 stock_total      units the rules put on sale (sold + reserved never exceeds it)
--   6 per_player_max   units one player may hold reserved or sold; 0 = no limit here
--   7 start_ms         epoch ms the sale opens; 0 = no start
--   8 end_ms           epoch ms the sale ends (exclusive); 0 = no end
--   9 claim_max        overdue reservations leased to the caller at most
--  10 lease_ms         ms a leased reservation is left to its repairer before another
-- Returns {status, left_units, order, player, order, player, ...}: the overdue
-- reservations leased to the caller follow the status (with every status). status is
-- "ok" (reserved), "exists" (this order holds a reservation already: nothing written),
-- "done" (this order was confirmed or released already), "SOLD_OUT", "LIMIT_REACHED",
-- "NOT_ON_SALE", "SALE_ENDED", "ORDER_MISMATCH" (the order id is another player's) or
-- "BAD_ARGS". left_units = stock_total - sold - reserved after the call (never below 0).
-- Every check runs before the first write; no error path follows it.

local now = tonumber(ARGV[1])
local order, player = ARGV[2], ARGV[3]
local deadline, total = tonumber(ARGV[4]), tonumber(ARGV[5])
local per_player_max, start_ms, end_ms = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local claim_max, lease_ms = tonumber(ARGV[9]), tonumber(ARGV[10])
if not (now and deadline and total and per_player_max and start_ms and end_ms and claim_max
    and lease_ms) or order == '' or player == '' then
  return {'BAD_ARGS', 0}
end

local counts = redis.call('HMGET', KEYS[1], 'sold', 'reserved', 'r:' .. order)
local sold, reserved = tonumber(counts[1] or '0'), tonumber(counts[2] or '0')
local left = math.max(0, total - sold - reserved)

local status = 'ok'
if counts[3] then
  local owner = string.match(counts[3], '^(.*)|%d+$')
  status = (owner == player) and 'exists' or 'ORDER_MISMATCH'
elseif redis.call('ZSCORE', KEYS[4], order) then status = 'done'
elseif start_ms > 0 and now < start_ms then status = 'NOT_ON_SALE'
elseif end_ms > 0 and now >= end_ms then status = 'SALE_ENDED'
elseif left <= 0 then status = 'SOLD_OUT'
elseif per_player_max > 0
    and tonumber(redis.call('HGET', KEYS[2], player) or '0') >= per_player_max then
  status = 'LIMIT_REACHED'
end

local overdue = redis.call('ZRANGE', KEYS[3], '-inf', now, 'BYSCORE', 'LIMIT', 0, claim_max)
local owners = {}
if #overdue > 0 then
  local fields = {}
  for i, o in ipairs(overdue) do fields[i] = 'r:' .. o end
  owners = redis.call('HMGET', KEYS[1], unpack(fields))
end

-- Writes. Nothing below may fail.
local reply = {status, 0}
for i, o in ipairs(overdue) do
  if owners[i] then
    redis.call('ZADD', KEYS[3], 'XX', now + lease_ms, o)
    reply[#reply + 1] = o
    reply[#reply + 1] = string.match(owners[i], '^(.*)|%d+$')
  else
    redis.call('ZREM', KEYS[3], o)  -- settled meanwhile: nothing to repair
  end
end
if status == 'ok' then
  redis.call('HSET', KEYS[1], 'r:' .. order, player .. '|' .. deadline, 'reserved', reserved + 1)
  redis.call('HINCRBY', KEYS[2], player, 1)
  redis.call('ZADD', KEYS[3], deadline, order)
  left = left - 1
end
reply[2] = left
return reply
