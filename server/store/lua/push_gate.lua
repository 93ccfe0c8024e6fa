-- push_gate.lua: let one push of a kind through per window, e.g. one `friend_request` push
-- per (from, to) pair, so a request / decline loop cannot flood the target's inbox.
--
-- KEYS: 1 gate       string  epoch ms (the injected clock's) of the last push let through
-- ARGV: 1 now_ms     epoch milliseconds
--       2 window_ms  milliseconds, > 0
-- Returns 1 when the push may go out (now recorded), 0 when one went out within window_ms.
-- The key expires after window_ms of Redis's own time as well, so gates do not pile up;
-- the stored ms keeps the window right when the injected clock runs ahead (tests, QA).

local now_ms, window_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local last_ms = tonumber(redis.call('GET', KEYS[1]) or '')
if last_ms and now_ms >= last_ms and now_ms - last_ms < window_ms then
  return 0
end
redis.call('SET', KEYS[1], now_ms, 'PX', window_ms)
return 1
