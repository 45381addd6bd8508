-- First step of a rebuild: takes the session's rebuild lease, only while the session has no hot
-- state and nobody else holds the lease, and clears what an earlier rebuild (whose lease ran
-- out) may have left. Every key is in KEYS: the caller lists the instance names it read from
-- `inst`; if the set changed in between, nothing happens and the caller reads again.
-- KEYS: 1 lease, 2 epoch, 3 inst, then every other key of the session to clear.
-- ARGV: 1 token, 2 lease ms, then the instance names.
-- Returns 'present' | 'busy' | 'changed' | 'ok' (lease taken, old keys cleared).
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 'present'
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'busy'
end
local names = redis.call('HKEYS', KEYS[3])
if #names ~= #ARGV - 2 then
  return 'changed'
end
local given = {}
for i = 3, #ARGV do given[ARGV[i]] = true end
for _, n in ipairs(names) do
  if not given[n] then return 'changed' end
end
for i = 3, #KEYS, 500 do
  redis.call('UNLINK', unpack(KEYS, i, math.min(i + 499, #KEYS)))
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 'ok'
