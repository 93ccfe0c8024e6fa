-- claim_timers.lua: lease the due timers of one bucket, so one poller fires each at a time.
--
-- KEYS: 1 timers  zset  member -> due time in epoch ms
-- ARGV: 1 now_ms       epoch milliseconds
--       2 limit        timers claimed at most per call
--       3 lease_until  epoch ms: the claimed timers are moved to it, not removed
-- Returns a flat array {member, due_ms, member, due_ms, ...}, oldest first. A claimed timer
-- stays in the set, due again at lease_until: the poller removes it once its handler ran
-- (timer_done.lua); a poller that dies in between leaves it to fire again after the lease.
-- So a timer fires at least once, and its handler must be idempotent.

local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2],
  'WITHSCORES')
for i = 1, #due, 2 do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], due[i])
end
return due
