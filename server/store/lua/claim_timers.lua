-- claim_timers.lua: take the due timers of one bucket, so each fires exactly once.
--
-- KEYS: 1 timers  zset  member -> due time in epoch ms
-- ARGV: 1 now_ms  epoch milliseconds
--       2 limit   timers claimed at most per call
-- Returns a flat array {member, due_ms, member, due_ms, ...}, oldest first. Claimed timers
-- are removed: whoever gets them fires them; a process that dies in between loses them,
-- which is safe because game state is computed from timestamps, never from timers.

local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2],
  'WITHSCORES')
for i = 1, #due, 2 do
  redis.call('ZREM', KEYS[1], due[i])
end
return due
