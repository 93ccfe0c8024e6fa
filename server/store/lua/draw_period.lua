-- draw_period.lua: a draw pool's period record, created once across processes: the server
-- seed (secret until the period is revealed), its published SHA-256 and the pool's prize
-- table frozen for the period. The first caller's seed wins; every caller gets the stored one.
--
-- KEYS (all carry the pool's tag {draw:<pool>}, so one hash slot):
--   1 period   hash  seed, hash, table (msgpack), start_ms, end_ms, created_ms
--   2 periods  zset  period id -> start_ms: the periods whose seeds are kept
-- ARGV:
--   1 period_id      YYYYMMDD, the period's first local day
--   2 seed           64 hex characters, drawn by the caller with `secrets`
--   3 seed_hash      hex SHA-256 of the seed
--   4 table          msgpack of the pool's prize table
--   5 start_ms       epoch ms, the period's first instant
--   6 end_ms         epoch ms, the period's end (exclusive)
--   7 keep_ms        ms the record is kept from now (to the period's end + history; a
--                    duration, not an instant: the app's clock may differ from the server's)
--   8 periods_max    periods kept in the index (the oldest beyond it drop out)
--   9 now_ms         epoch ms: created_ms of a new record
-- Returns {seed, seed_hash, table, created (1 new, 0 stored already)}.
-- Units: milliseconds. No check can fail: a missing record is always written whole.

local got = redis.call('HMGET', KEYS[1], 'seed', 'hash', 'table')
if got[1] then
  return {got[1], got[2], got[3], 0}
end
redis.call('HSET', KEYS[1], 'seed', ARGV[2], 'hash', ARGV[3], 'table', ARGV[4],
  'start_ms', ARGV[5], 'end_ms', ARGV[6], 'created_ms', ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[8])
if extra > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1)
end
return {ARGV[2], ARGV[3], ARGV[4], 1}
