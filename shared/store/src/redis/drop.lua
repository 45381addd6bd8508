-- Deletes a session's hot state (release). Every key is in KEYS: the caller lists the instance
-- names it read from `inst`; if the set changed in between, nothing is deleted and the caller
-- reads again. With an expected head, nothing is deleted unless the counter still holds it (an
-- idle release must keep a session that just took an event).
-- KEYS: 1 inst, 2 seq, then every key to delete.
-- ARGV: 1 expected head ('' = any), then the instance names.
-- Returns 'changed' | 'moved' | 'ok'.
if ARGV[1] ~= '' and (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then
  return 'moved'
end
local names = redis.call('HKEYS', KEYS[1])
if #names ~= #ARGV - 1 then
  return 'changed'
end
local given = {}
for i = 2, #ARGV do given[ARGV[i]] = true end
for _, n in ipairs(names) do
  if not given[n] then return 'changed' end
end
for i = 1, #KEYS, 500 do
  redis.call('UNLINK', unpack(KEYS, i, math.min(i + 499, #KEYS)))
end
return 'ok'
