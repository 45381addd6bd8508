-- Reads a session's whole live state in one atomic step.
-- Every key it touches is in KEYS (Redis Cluster routes by them): the caller reads the instance
-- names first and passes their keys; if the instance set changed in between, the script answers
-- with the current names and the caller tries again with them.
-- KEYS: 1 epoch, 2 seq, 3 inst, then for the i-th name of ARGV: ovr at 2 + 2i, meta at 3 + 2i.
-- ARGV: '$session', then every instance name the caller found in `inst`.
-- Returns {'nohot'} | {'changed', current names…} | {'ok', seq, name count, per name: name, record JSON (or ''
-- for $session), n, n × (path, value, meta)}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'nohot'}
end
local records = redis.call('HGETALL', KEYS[3])
local bodies = {}
local changed = {'changed'}
for i = 1, #records, 2 do
  bodies[records[i]] = records[i + 1]
  changed[#changed + 1] = records[i]
end
if #records / 2 ~= #ARGV - 1 then
  return changed
end
for i = 2, #ARGV do
  if bodies[ARGV[i]] == nil then
    return changed
  end
end
bodies['$session'] = ''
local out = {'ok', redis.call('GET', KEYS[2]) or '0', tostring(#ARGV)}
for i, name in ipairs(ARGV) do
  local ovr, meta = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local values = redis.call('HGETALL', ovr)
  out[#out + 1] = name
  out[#out + 1] = bodies[name]
  out[#out + 1] = tostring(#values / 2)
  for j = 1, #values, 2 do
    out[#out + 1] = values[j]
    out[#out + 1] = values[j + 1]
    out[#out + 1] = redis.call('HGET', meta, values[j]) or '{}'
  end
end
return out
