-- Last step of a rebuild: while the caller still holds the lease and the session still has no
-- hot state, sets the counter and floor, then the epoch (which makes the state visible), and
-- drops the lease.
-- KEYS: 1 lease, 2 epoch, 3 seq, 4 floor.  ARGV: 1 token, 2 epoch value, 3 seq, 4 floor.
-- Returns 'lost' | 'present' | 'ok'.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 'lost'
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DEL', KEYS[1])
  return 'present'
end
redis.call('SET', KEYS[3], ARGV[3])
redis.call('SET', KEYS[4], ARGV[4])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1])
return 'ok'
