-- commit_floor.lua (the bench's, not the server's): the Redis commands a credited sign-in's
-- commit.lua runs on a socket's remembered state (server/pipeline.py, Seen: the version,
-- the stamp and the reply are checked in the commit, the reply by the SET NX that stores
-- it, the first write, and the transfer id by the HSETNX that records it), with every
-- value computed by the
-- caller. What Redis spends on it is the
-- commit's cost without its logic (no parsing, tables, msgpack or sha1 in Lua): the floor
-- that bench/commit_cost.py prints beside commit.lua's own figure.
--
-- KEYS: 1 state (the player's one hash, layout 3), 2 journal, 3 txids, 4 sys, 5 reply,
--       6 push channel (the keys of server/ledger/commit.py for one player, in the same
--       slot; the `balance` push is a state push: no inbox)
-- ARGV: 1 entry bytes, 2 transfer id, 3 seq, 4 balance, 5 chain head, 6 the batches
--       field's value, 7 push frame, 8 reply value, 9 the state field's value
-- Returns: 'ok'

redis.call('HMGET', KEYS[1], 'ver', 'pseq', 'vs', 'bal', 'seq', 'head', 'held', 'debt', 'ck_seq',
  'bt', 'hx')
redis.call('SET', KEYS[5], ARGV[8], 'NX', 'EX', 86400)
redis.call('HSETNX', KEYS[3], ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[4], 'mint:signin', -10)
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PUBLISH', KEYS[6], ARGV[7])
redis.call('HSET', KEYS[1], 'ver', ARGV[3], 'vs', ARGV[2], 'signin', ARGV[9], 'bal', ARGV[4],
  'seq', ARGV[3], 'head', ARGV[5], 'bt', ARGV[6])
return 'ok'
