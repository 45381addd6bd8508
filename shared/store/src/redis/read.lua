-- Reads a contiguous range of a session's hot log, atomically with its floor, so a concurrent
-- trim can never return a range with a hole.
-- KEYS: 1 epoch, 2 floor, 3 events.  ARGV: 1 after, 2 to (or '+inf'), 3 limit.
-- Returns {'nohot'} | {'below', floor} | {'ok', event…}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'nohot'}
end
local floor = tonumber(redis.call('GET', KEYS[2]) or '1')
if tonumber(ARGV[1]) + 1 < floor then
  return {'below', tostring(floor)}
end
local events = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {'ok'}
for _, e in ipairs(events) do out[#out + 1] = e end
return out
