-- Drops hot-log events below ARGV[1] (never above head + 1) and raises the floor.
-- KEYS: 1 epoch, 2 seq, 3 floor, 4 events.
-- Returns {removed, bytes of the removed members}, or {-1, 0} if no hot state.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, 0}
end
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
local target = math.min(tonumber(ARGV[1]), head + 1)
local floor = tonumber(redis.call('GET', KEYS[3]) or '1')
if target <= floor then
  return {0, 0}
end
local bytes = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. target)) do
  bytes = bytes + #member
end
local removed = redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. target)
redis.call('SET', KEYS[3], target)
return {removed, bytes}
