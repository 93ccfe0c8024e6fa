-- draw_settle.lua: settle a reserved draw once the player's commit is known: "confirm"
-- (the commit happened: the record joins the period's log, the stock unit stays taken) or
-- "release" (the commit can no longer happen: the stock unit comes back).
--
-- KEYS (all carry the pool's tag {draw:<pool>}, so one hash slot):
--   1 stock    hash  prize -> units taken this period
--   2 pending  hash  draw id -> "<fingerprint>|<owner>|<expires_ms>|<prize>|<record>"
--   3 log      list  confirmed draw records (msgpack)
--   4 due      zset  "<period id>|<draw id>" -> expires_ms
--   5 done     hash  draw id -> "1": the draws confirmed into the log (each once)
-- ARGV:
--   1 period_id      YYYYMMDD
--   2 draw_id        "<nonce>:<player>"
--   3 action         "confirm" | "release"
--   4 owner          release: only the holder's own reservation ("" = any: the sweep,
--                    after fencing the player's state)
--   5 fingerprint    confirm: the committed draw's fingerprint ("" = the reserved one)
--   6 record         confirm: the committed record, logged when the reservation's
--                    fingerprint differs (its stock unit is then swapped for `prize`)
--   7 prize          confirm: the committed draw's stock-limited prize, or ""
--   8 keep_ms        ms a `done` hash this confirm creates is kept (reserves extend it)
-- Returns "confirmed", "released", "duplicate" (a confirm of a draw id logged already: a
-- stale op's second reservation of it, released), "kept" (a release by another owner:
-- nothing done) or "none" (no such reservation: settled already); an unknown action is
-- an error reply. Every check runs before the first write. Units: stock units, ms.

local draw_id, action, owner = ARGV[2], ARGV[3], ARGV[4]
if action ~= 'release' and action ~= 'confirm' then
  return redis.error_reply('BAD_ACTION')
end
local old = redis.call('HGET', KEYS[2], draw_id)
if not old then
  redis.call('ZREM', KEYS[4], ARGV[1] .. '|' .. draw_id)
  return 'none'
end
local f, o, e, p = string.match(old, '^([^|]*)|([^|]*)|(%d+)|([^|]*)|')
local record = string.sub(old, #f + #o + #e + #p + 5)
if action == 'release' and owner ~= '' and owner ~= o then
  return 'kept'
end

-- Writes. Nothing below may fail.
redis.call('HDEL', KEYS[2], draw_id)
redis.call('ZREM', KEYS[4], ARGV[1] .. '|' .. draw_id)
if action == 'confirm' and redis.call('HEXISTS', KEYS[5], draw_id) == 1 then
  action = 'duplicate'
end
if action ~= 'confirm' then
  if p ~= '' then redis.call('HINCRBY', KEYS[1], p, -1) end
  return action == 'release' and 'released' or 'duplicate'
end
if ARGV[5] ~= '' and ARGV[5] ~= f then
  -- The commit carried another draw than the one reserved (a reservation replaced after
  -- it expired): log what was committed, and count its stock instead.
  if p ~= '' then redis.call('HINCRBY', KEYS[1], p, -1) end
  if ARGV[7] ~= '' then redis.call('HINCRBY', KEYS[1], ARGV[7], 1) end
  record = ARGV[6]
end
redis.call('HSET', KEYS[5], draw_id, '1')
if redis.call('PTTL', KEYS[5]) < 0 then
  redis.call('PEXPIRE', KEYS[5], ARGV[8])  -- a new hash; the next reserve extends it
end
redis.call('RPUSH', KEYS[3], record)
return 'confirmed'
