-- Drops hot-log events below ARGV[1] (never above head + 1) and raises the floor.
-- KEYS: 1 epoch, 2 seq, 3 floor, 4 events.  Returns the number removed, or -1 if no hot state.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
local target = math.min(tonumber(ARGV[1]), head + 1)
local floor = tonumber(redis.call('GET', KEYS[3]) or '1')
if target <= floor then
  return 0
end
local removed = redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. target)
redis.call('SET', KEYS[3], target)
return removed
