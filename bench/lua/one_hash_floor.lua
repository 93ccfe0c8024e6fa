-- one_hash_floor.lua (the bench's, not the server's): the Redis commands a credited sign-in
-- would run if a player's state, wallet, transfer ids and stored replies were one hash: one
-- HMGET reads what the commit checks (the version, the stamp, the balances, the transfer
-- id and the request id), one HSET writes it all back. The journal, the bucket's system
-- accounts and the push stay as in commit.lua. Every value comes from the caller:
-- what Redis spends here is that layout's cost without any logic, against commit_floor.lua's
-- for today's layout (bench/commit_cost.py, shape `one_hash_floor`).
--
-- KEYS: 1 player hash, 2 journal, 3 sys, 4 push channel (one slot)
-- ARGV: 1 entry bytes, 2 transfer id field (t:<id>), 3 seq, 4 balance, 5 chain head,
--       6 batches (one field), 7 push frame, 8 reply field (r:<request id>), 9 reply value,
--       10 the state field's value
-- Returns: 'ok'

redis.call('HMGET', KEYS[1], 'ver', 'pseq', 'vs', 'bal', 'seq', 'head', 'held', 'debt',
  'ck_seq', 'batches', 'holds', ARGV[2], ARGV[8])
redis.call('HINCRBY', KEYS[3], 'mint:signin', -10)
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'ver', ARGV[3], 'vs', ARGV[2], 'signin', ARGV[10], 'bal', ARGV[4],
  'seq', ARGV[3], 'head', ARGV[5], 'batches', ARGV[6], ARGV[2], ARGV[3],
  ARGV[8], ARGV[9])
redis.call('PUBLISH', KEYS[4], ARGV[7])
return 'ok'
