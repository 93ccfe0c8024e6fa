-- floor_credit.lua (the bench's, not the server's): the store's side of bench/credit_floor.py,
-- the credit path's floor on the server. It does what a credited commit does for the server
-- to see: publish a `balance` state push on the player's channel and answer in commit.lua's
-- reply shape. Its own cost is not what the floor measures (bench.instructions counts the server).
--
-- KEYS: 1 the player's push channel (declared for the slot), 2 a counter of the player's
--       credits (the push's entry_seq)
-- ARGV: 1 "PUBLISH", or "SPUBLISH" on Redis Cluster, 2 the request id
-- Returns: {'ok', balance, ver, pseq, {}, held, debt, entry_seq} as commit.lua does

local seq = redis.call('INCR', KEYS[2])
redis.call(ARGV[1], KEYS[1], '\131\164push\167balance\163seq\000\164data\131\167balance'
  .. cmsgpack.pack(10 * seq) .. '\165delta' .. cmsgpack.pack(10) .. '\169entry_seq'
  .. cmsgpack.pack(seq))
return {'ok', 10 * seq, seq, 0, {}, 0, 0, seq}
