-- Deletes a session's hot state (release). Every key is in KEYS: the caller lists the instance
-- names it read from `inst`; if the set changed in between, nothing is deleted and the caller
-- reads again.
-- KEYS: 1 inst, then every key to delete.  ARGV: the instance names.
-- Returns 'changed' | 'ok'.
local names = redis.call('HKEYS', KEYS[1])
if #names ~= #ARGV then
  return 'changed'
end
local given = {}
for _, n in ipairs(ARGV) do given[n] = true end
for _, n in ipairs(names) do
  if not given[n] then return 'changed' end
end
for i = 1, #KEYS, 500 do
  redis.call('UNLINK', unpack(KEYS, i, math.min(i + 499, #KEYS)))
end
return 'ok'
