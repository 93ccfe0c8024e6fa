-- lease.lua: take or renew a lease so that a scheduled job runs on one process at a time.
--
-- KEYS: 1 lease  string  holder id, expiring
-- ARGV: 1 holder  the process asking (a random id per process)
--       2 ttl_ms  lease length in milliseconds
-- Returns 1 when the caller holds the lease for ttl_ms from now, 0 when another holder does.
-- The holder renews on every run; a holder that dies loses the lease after ttl_ms.

local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
