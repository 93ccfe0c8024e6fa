-- friend_edge.lua: write one side of a friend pair: compare-and-set the edge, keep the
-- player's counts, refuse an edge that would pass its limit. A pair's two sides live in two
-- players' slots, so server/ops/friends.py calls this once per side (see its docstring).
--
-- KEYS (one player's bucket tag, so one slot):
--   1 friends        hash  peer id -> msgpack edge {s = status, t = since_ms}
--   2 friend_counts  hash  rel: edges that are not blocks (friends, requests either way);
--                          blk: blocks. Rebuilt from KEYS[1] when missing.
-- ARGV:
--   1 peer      the other player's id
--   2 expected  the edge as the caller read it (msgpack bytes), "" = no edge
--   3 edge      the new edge (msgpack bytes), "" = delete the edge
--   4 rel_max   relations allowed (farm.friends_max), integer >= 0
--   5 blk_max   blocks allowed (farm.blocks_max), integer >= 0
-- Returns {status, rel, blk}: status "ok", "CONFLICT" (the edge is no longer `expected`:
-- read again and decide again), "FRIENDS_LIMIT" or "BLOCKS_LIMIT" (the edge would take a
-- relation or a block past its max); rel and blk, the counts after the call.
-- Only "ok" writes. A limit is checked only when an edge enters its kind: a request that
-- becomes a friendship, or a block kept, takes no new place, so a lowered limit never
-- refuses them.
--
-- Every check runs before the first write. The counts are right only if every write to
-- KEYS[1] goes through this script; deleting KEYS[2] makes the next call count again.

local peer, expected, edge = ARGV[1], ARGV[2], ARGV[3]
local limits = {rel = tonumber(ARGV[4]), blk = tonumber(ARGV[5])}

local function kind_of(raw)
  if raw == '' then return nil end
  if cmsgpack.unpack(raw)['s'] == 'blocked' then return 'blk' end
  return 'rel'
end

local current = redis.call('HGET', KEYS[1], peer) or ''
local stored = redis.call('HMGET', KEYS[2], 'rel', 'blk')
local counts = {rel = tonumber(stored[1]), blk = tonumber(stored[2])}
if not counts.rel or not counts.blk then
  counts = {rel = 0, blk = 0}
  for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do
    local kind = kind_of(raw)
    counts[kind] = counts[kind] + 1
  end
end
if current ~= expected then
  return {'CONFLICT', counts.rel, counts.blk}
end
local old_kind, new_kind = kind_of(expected), kind_of(edge)
if new_kind and new_kind ~= old_kind and counts[new_kind] >= limits[new_kind] then
  return {new_kind == 'blk' and 'BLOCKS_LIMIT' or 'FRIENDS_LIMIT', counts.rel, counts.blk}
end

-- Writes.
if old_kind then counts[old_kind] = math.max(0, counts[old_kind] - 1) end
if new_kind then counts[new_kind] = counts[new_kind] + 1 end
if edge == '' then
  redis.call('HDEL', KEYS[1], peer)
else
  redis.call('HSET', KEYS[1], peer, edge)
end
redis.call('HSET', KEYS[2], 'rel', counts.rel, 'blk', counts.blk)
return {'ok', counts.rel, counts.blk}
