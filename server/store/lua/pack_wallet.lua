-- pack_wallet.lua: rewrite one player's layout-2 batch and hold-index fields (b:<YYYYMMDD>,
-- h:<order id>) as layout 3's two fields of the same hash (server/store/layout.py), bt and
-- hx (commit.lua's header), atomically. Run again on a player already packed, it finds none.
--
-- KEYS: 1 state   the player's one hash
-- ARGV: none
-- Returns {status, fields packed}; status "ok", "none" (no b: or h: field: packed already,
-- or never had one), "CLASH" (bt or hx is there already beside the fields it would be made
-- of) or "BAD" (a b: or h: field that is not a number of coins or a hold index entry); on
-- every status but "ok" nothing is written. Layout 2 refused rule fields with either
-- prefix, so each one is the wallet's.
--
-- Every check runs before the first write: Redis does not roll back a failed script.

local all = redis.call('HGETALL', KEYS[1])
local batches, holds, gone = {}, {}, {}
local n_holds, has_bt, has_hx = 0, false, false
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  local two = string.sub(f, 1, 2)
  if two == 'b:' then
    local day, coins = tonumber(string.sub(f, 3)), tonumber(v)
    if not day or not coins then return {'BAD', 0} end
    batches[#batches + 1] = {day, coins}
    gone[#gone + 1] = f
  elseif two == 'h:' then
    local coins, expires = string.match(v, '^(%d+)|(%d+)$')
    if not coins then return {'BAD', 0} end
    holds[string.sub(f, 3)] = {tonumber(coins), tonumber(expires)}
    n_holds = n_holds + 1
    gone[#gone + 1] = f
  elseif f == 'bt' then has_bt = true
  elseif f == 'hx' then has_hx = true
  end
end
if #gone == 0 then return {'none', 0} end
if (#batches > 0 and has_bt) or (n_holds > 0 and has_hx) then return {'CLASH', 0} end
table.sort(batches, function(a, b) return a[1] < b[1] end)
local kept = {}
for _, b in ipairs(batches) do
  if b[2] > 0 then kept[#kept + 1] = b[1] .. '=' .. b[2] end
end

-- Writes. Nothing below may fail. HDEL in slices: unpack() of more than ~8000 values would
-- fail after the first write.
for at = 1, #gone, 1000 do
  redis.call('HDEL', KEYS[1], unpack(gone, at, math.min(at + 999, #gone)))
end
if #kept > 0 then redis.call('HSET', KEYS[1], 'bt', table.concat(kept, ',')) end
if n_holds > 0 then redis.call('HSET', KEYS[1], 'hx', cmsgpack.pack(holds)) end
return {'ok', #gone}
