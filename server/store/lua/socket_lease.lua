-- socket_lease.lua: give a new socket of a player a place, counted across every server
-- process, or refuse it when the player's live sockets already fill MANOR_SOCKETS_PER_PLAYER_MAX.
--
-- KEYS: 1 sockets  sorted set  member = socket id (unique across processes), score = its
--                              lease expiry, epoch ms of the injected clock
--       2 state    hash        the player's one hash: `sk` = the live sockets once this one
--                              holds its place (commit.lua publishes no `balance` push for
--                              a socket's own credit while `sk` is 1: nobody else listens)
-- ARGV: 1 socket    the new socket's id
--       2 now_ms    epoch milliseconds
--       3 lease_ms  lease length in milliseconds, > 0
--       4 limit     live sockets allowed per player, >= 1
-- Returns 1 when the socket holds a place until now_ms + lease_ms (expired members dropped,
-- the socket added, `sk` written), 0 when `limit` live sockets hold every place: then
-- nothing is written. `sk` (every member but the new one, expired ones included, plus the
-- new one) is not lowered when a socket closes: it may count one too many (a push
-- published that nobody reads), never one too few, but for a lease the store lost
-- (presence.py drops `sk` when its renewal writes one back).
-- A member is live while its score > now_ms. The process that owns a socket renews its
-- lease (ZADD) and removes it on close (ZREM); a process that dies leaves members that
-- expire after lease_ms. The key expires after lease_ms of Redis's own time as well (each
-- renewal moves it), so a player nobody renews leaves nothing behind.

local now_ms, lease_ms, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if not (now_ms and lease_ms and limit) or lease_ms <= 0 or limit < 1 or ARGV[1] == '' then
  return redis.error_reply('ERR socket_lease: bad arguments')
end
local live = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[2], '+inf')
if live >= limit then
  return 0
end
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('ZADD', KEYS[1], now_ms + lease_ms, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
-- The expired leases count in `sk` too: a socket whose process missed its renewals (the
-- store out of reach) may still be open. Its next renewal writes it back as a new member,
-- which drops `sk` (presence.py); a dead process's leases are gone after this call.
redis.call('HSET', KEYS[2], 'sk', live + expired + 1)
return 1
