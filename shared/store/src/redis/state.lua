-- Reads a session's whole live state in one atomic step.
-- KEYS: 1 epoch, 2 seq, 3 inst.  ARGV: 1 key prefix `dl:{S}:i:`.
-- Returns {'nohot'} | {'ok', seq, instance count, per instance: name, record JSON (or '' for
-- $session), n, n × (path, value, meta)}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'nohot'}
end
local out = {'ok', redis.call('GET', KEYS[2]) or '0'}
local records = redis.call('HGETALL', KEYS[3])
local names = {'$session'}
local bodies = {['$session'] = ''}
for i = 1, #records, 2 do
  names[#names + 1] = records[i]
  bodies[records[i]] = records[i + 1]
end
out[#out + 1] = tostring(#names)
for _, name in ipairs(names) do
  -- All keys of a session share its hash tag, so they live in one cluster slot.
  local ovr = ARGV[1] .. name .. ':ovr'
  local meta = ARGV[1] .. name .. ':meta'
  local values = redis.call('HGETALL', ovr)
  out[#out + 1] = name
  out[#out + 1] = bodies[name]
  out[#out + 1] = tostring(#values / 2)
  for i = 1, #values, 2 do
    out[#out + 1] = values[i]
    out[#out + 1] = values[i + 1]
    out[#out + 1] = redis.call('HGET', meta, values[i]) or '{}'
  end
end
return out
