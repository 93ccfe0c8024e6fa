-- merge_wallet.lua: move one player's layout-1 wallet hash into its state hash (layout 2,
-- server/store/layout.py), atomically: the fields land in the state hash and the wallet key
-- goes, or nothing changes. Run again on a player already moved, it finds no wallet.
--
-- KEYS: 1 wallet  hash of layout 1 (`<player base>:wallet`)
--       2 state   hash of the same player (same tag, so one slot)
-- ARGV: none
-- Returns {status, fields moved}; status "ok", "none" (no wallet hash: moved already, or the
-- player never had one) or "CLASH" (the state hash has a field of the wallet's name already:
-- nothing written; no server of either layout writes such a store).
--
-- Every check runs before the first write: Redis does not roll back a failed script.

if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return {'none', 0} end
local wallet = redis.call('HGETALL', KEYS[1])
for i = 1, #wallet, 2 do
  if redis.call('HEXISTS', KEYS[2], wallet[i]) == 1 then return {'CLASH', 0} end
end

-- Writes. Nothing below may fail. HSET in slices: unpack() of more than ~8000 values would
-- fail after the first write.
for at = 1, #wallet, 1000 do
  redis.call('HSET', KEYS[2], unpack(wallet, at, math.min(at + 999, #wallet)))
end
redis.call('DEL', KEYS[1])
return {'ok', #wallet / 2}
