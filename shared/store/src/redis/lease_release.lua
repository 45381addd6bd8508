-- Gives a lease back if the caller still holds it: a rebuild's after an error (so the next
-- rebuild need not wait for it to run out; what it wrote stays invisible, without an epoch, and
-- is cleared by the next rebuild), or a session's maintenance lease. A holder whose lease ran
-- out and was taken by someone else deletes nothing.
-- KEYS: 1 lease.  ARGV: 1 token.  Returns 1 when released.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
