-- Gives up a rebuild's lease after an error, if the caller still holds it, so the next rebuild
-- need not wait for it to run out. What was written stays invisible (no epoch) and is cleared
-- by the next rebuild.
-- KEYS: 1 lease.  ARGV: 1 token.  Returns 1 when released.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
