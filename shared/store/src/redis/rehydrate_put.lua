-- One chunk of a rebuild's writes, done only while the caller still holds the lease (a writer
-- whose lease ran out can no longer write); renews the lease.
-- KEYS: 1 lease, 2 target.  ARGV: 1 token, 2 lease ms, 3 kind (hash|zset), then pairs
-- (field, value) for a hash or (score, member) for a zset.
-- Returns 1 when written, 0 when the lease is lost.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] == 'hash' then
  for i = 4, #ARGV, 2 do
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
else
  for i = 4, #ARGV, 2 do
    redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
return 1
