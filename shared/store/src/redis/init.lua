-- Creates a new session's hot state: counter at 0, `$session` defaults, epoch set last.
-- Does nothing when the session has a hot state or a rebuild holds its lease (the rebuild will
-- create it).
-- KEYS: 1 epoch, 2 seq, 3 lease, 4 `$session` base.  ARGV: 1 epoch value, then (path, value) pairs.
-- Returns 1 when created, 0 when left as it was.
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
redis.call('SETNX', KEYS[2], '0')
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
