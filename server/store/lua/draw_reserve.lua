-- draw_reserve.lua: reserve a draw of one player in a pool's period before the player's
-- coins move: one unit of the drawn prize's period stock (if it has a stock limit) and a
-- place in the period's log, held for the draw id until settled (draw_settle.lua).
--
-- KEYS (all carry the pool's tag {draw:<pool>}, so one hash slot):
--   1 stock    hash  prize -> units taken this period (reserved or confirmed)
--   2 pending  hash  draw id -> "<fingerprint>|<owner>|<expires_ms>|<prize>|<record>"
--   3 log      list  confirmed draw records (msgpack), in confirmation order
--   4 due      zset  "<period id>|<draw id>" -> expires_ms: reservations for the sweep
--   5 done     hash  draw id -> "1": the draws confirmed into the log (each once)
-- ARGV:
--   1 period_id      YYYYMMDD
--   2 draw_id        "<nonce>:<player>": one per player and nonce
--   3 fingerprint    hex digest of the draw's inputs (period, client seed, nonce, misses)
--   4 owner          random id of the op holding the reservation
--   5 prize          the prize whose stock to take, or "" (no stock limit)
--   6 stock          that prize's period stock (units)
--   7 record         msgpack draw record to log when confirmed
--   8 expires_ms     epoch ms: past it the sweep may settle the reservation
--   9 log_max        draws a period may hold (logged + reserved)
--  10 keep_ms        ms the period's keys are kept from now (to its end + history)
--  11 now_ms         epoch ms
--  12 confirm_id     the player's previous draw id ("" = none): the player's state shows it
--                    committed, so a reservation of it still here (its op died before
--                    settling) is confirmed by this touch
-- Returns {status, record}: "ok" (reserved now), "exists" (this draw id holds a
-- reservation with the same fingerprint: its record, reserved earlier, is the draw), or
-- {refusal}: "DONE" (this draw id was confirmed already: the caller's state is stale,
-- reload), "SOLD_OUT" (the prize's stock is gone), "PERIOD_FULL" (log_max reached),
-- "RESERVED" (another op holds this draw id with other inputs, not yet expired: reload).
-- Every check runs before the first write. Units: milliseconds, stock units.

local period_id, draw_id, fingerprint, owner = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local prize, stock, record = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local expires_ms, log_max, now = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[11])

local function parse(value)
  -- {fingerprint, owner, expires_ms, prize, record} of a reservation
  local f, o, e, p = string.match(value, '^([^|]*)|([^|]*)|(%d+)|([^|]*)|')
  return f, o, tonumber(e), p, string.sub(value, #f + #o + #e + #p + 5)
end

if redis.call('HEXISTS', KEYS[5], draw_id) == 1 then
  return {'DONE'}
end
local old = redis.call('HGET', KEYS[2], draw_id)
local replace_prize = nil  -- the stock unit an expired or own reservation gives back
if old then
  local f, o, e, p, kept = parse(old)
  if f == fingerprint then
    return {'exists', kept}
  end
  if o ~= owner and e > now then
    return {'RESERVED'}
  end
  replace_prize = p
end

local held = redis.call('LLEN', KEYS[3]) + redis.call('HLEN', KEYS[2])
if old then held = held - 1 end
if held >= log_max then
  return {'PERIOD_FULL'}
end
if prize ~= '' then
  local taken = tonumber(redis.call('HGET', KEYS[1], prize) or '0')
  if replace_prize == prize then taken = taken - 1 end
  if taken >= stock then
    return {'SOLD_OUT'}
  end
end

-- Writes. Nothing below may fail.
local previous = ARGV[12] ~= '' and redis.call('HGET', KEYS[2], ARGV[12])
if previous then
  local _, _, _, p, kept = parse(previous)
  if redis.call('HSETNX', KEYS[5], ARGV[12], '1') == 1 then
    redis.call('RPUSH', KEYS[3], kept)
  elseif p ~= '' then
    redis.call('HINCRBY', KEYS[1], p, -1)  -- logged already: a stale duplicate's unit back
  end
  redis.call('HDEL', KEYS[2], ARGV[12])
  redis.call('ZREM', KEYS[4], period_id .. '|' .. ARGV[12])
end
if replace_prize and replace_prize ~= '' then
  redis.call('HINCRBY', KEYS[1], replace_prize, -1)
end
if prize ~= '' then
  redis.call('HINCRBY', KEYS[1], prize, 1)
end
redis.call('HSET', KEYS[2], draw_id,
  fingerprint .. '|' .. owner .. '|' .. expires_ms .. '|' .. prize .. '|' .. record)
redis.call('ZADD', KEYS[4], expires_ms, period_id .. '|' .. draw_id)
for i = 1, 3 do
  redis.call('PEXPIRE', KEYS[i], ARGV[10])
end
redis.call('PEXPIRE', KEYS[5], ARGV[10])
return {'ok', record}
