-- timer_done.lua: remove timers whose handler ran, unless they were armed again meanwhile.
--
-- KEYS: 1 timers  zset  member -> due time in epoch ms
-- ARGV: pairs of (member, lease_until): the lease claim_timers.lua gave it
-- Returns the number of timers removed. A member whose score is no longer its lease was
-- armed again (a commit moved it to a new due time) and stays.

local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
