-- Atomic commit of one event to a session's hot state (ARCHITECTURE.md invariants 1, 2, 4, 6).
--
-- Epoch check, dedup, compare-and-set, sequence, append and override update happen in this one
-- script, so no crash or race can leave a gap, a duplicate or a lost update. Values are
-- canonical JSON strings prepared by the caller: equal values are equal strings, and the script
-- never parses JSON (only `inc` reads a number with tonumber).
--
-- KEYS: 1 epoch, 2 seq, 3 events (zset), 4 the event id's dedup bucket (hash), 5 inst (hash),
--       6 ended (the end marker, outside the hot state), then 3 keys per touched instance j:
--       base, ovr, meta; and last, the audience token (outside the hot state).
-- ARGV: 1 the id's field in its bucket, 2 short content hash, 3 event JSON after its opening brace and without
--       `sequence`, 4 override metadata JSON prefix ending in `"sequence":`, 5 kind
--       (none|update|force|add|remove), then per kind:
--   update: 6 instance, 7 n, then n × (path, op cas|inc|set, arg, to)
--   force:  6 instance count m, then m × (instance, n, n × (path, value))
--   add:    6 instance, 7 instance record JSON, 8 n, then n × (path, value)  (base leaves)
--   remove: 6 instance
-- Returns: {'ended'} | {'nohot'} | {'dup', seq} | {'reused'} | {'invalid', reason, subject}
--        | {'conflict', path1, current1, …} | {'ok', seq, audience, replaced…}
--   audience: the audience token read in this step ('' when there is none), so a broadcaster
--   knows whether its cached list of the session's connections is current.
--   replaced: for each blind write (`set`) of an update over an existing override, the
--   override it replaced, as (path, value, meta JSON), read before anything is written (the GM
--   conflict report); base values are nobody's write and are not reported.
--   reason (mapped to InvalidCommit in Rust): instance_missing | instance_exists (subject: the
--   instance) | inc_not_integer | inc_out_of_range (subject: the path).
-- Checked in this order, like the in-memory adapter: end marker, epoch, dedup, instances,
-- compare-and-set, inc arithmetic.

local MAX_SAFE = 9007199254740991

if redis.call('EXISTS', KEYS[6]) == 1 then
  return {'ended'}
end

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'nohot'}
end

local seen = redis.call('HGET', KEYS[4], ARGV[1])
if seen then
  local sep = string.find(seen, ':', 1, true)
  if string.sub(seen, sep + 1) == ARGV[2] then
    return {'dup', string.sub(seen, 1, sep - 1)}
  end
  return {'reused'}
end

local function exists(instance)
  return instance == '$session' or redis.call('HEXISTS', KEYS[5], instance) == 1
end

local function current(base, ovr, path)
  local v = redis.call('HGET', ovr, path)
  if v then return v end
  v = redis.call('HGET', base, path)
  if v then return v end
  return 'null'
end

local kind = ARGV[5]
local writes = {}  -- {ovr, meta, path, value}
local replaced = {}  -- path, value, meta, …

if kind == 'update' then
  local instance = ARGV[6]
  if not exists(instance) then
    return {'invalid', 'instance_missing', instance}
  end
  local base, ovr, meta = KEYS[7], KEYS[8], KEYS[9]
  local n = tonumber(ARGV[7])
  local currents = {}
  local mismatch = false
  for i = 0, n - 1 do
    local path, op, arg = ARGV[8 + i * 4], ARGV[9 + i * 4], ARGV[10 + i * 4]
    local cur = current(base, ovr, path)
    currents[#currents + 1] = path
    currents[#currents + 1] = cur
    if op == 'cas' and cur ~= arg then mismatch = true end
    if op == 'set' then
      local old = redis.call('HGET', ovr, path)
      if old then
        replaced[#replaced + 1] = path
        replaced[#replaced + 1] = old
        replaced[#replaced + 1] = redis.call('HGET', meta, path) or '{}'
      end
    end
  end
  if mismatch then
    local out = {'conflict'}
    for _, v in ipairs(currents) do out[#out + 1] = v end
    return out
  end
  for i = 0, n - 1 do
    local path, op, arg, to = ARGV[8 + i * 4], ARGV[9 + i * 4], ARGV[10 + i * 4], ARGV[11 + i * 4]
    local value = to
    if op == 'inc' then
      local cur = currents[i * 2 + 2]
      local num = 0
      if cur ~= 'null' then num = tonumber(cur) end
      if num == nil or num ~= math.floor(num) or math.abs(num) > MAX_SAFE then
        return {'invalid', 'inc_not_integer', path}
      end
      local sum = num + tonumber(arg)
      if math.abs(sum) > MAX_SAFE then
        return {'invalid', 'inc_out_of_range', path}
      end
      value = string.format('%.0f', sum)
    end
    writes[#writes + 1] = {ovr, meta, path, value}
  end
elseif kind == 'force' then
  local m = tonumber(ARGV[6])
  local at = 7
  for j = 0, m - 1 do
    local instance = ARGV[at]
    local n = tonumber(ARGV[at + 1])
    if not exists(instance) then
      return {'invalid', 'instance_missing', instance}
    end
    for i = 0, n - 1 do
      writes[#writes + 1] = {KEYS[8 + j * 3], KEYS[9 + j * 3], ARGV[at + 2 + i * 2], ARGV[at + 3 + i * 2]}
    end
    at = at + 2 + n * 2
  end
elseif kind == 'add' then
  if exists(ARGV[6]) then
    return {'invalid', 'instance_exists', ARGV[6]}
  end
elseif kind == 'remove' then
  if not exists(ARGV[6]) then
    return {'invalid', 'instance_missing', ARGV[6]}
  end
end

local seq = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[3], seq, '{"sequence":' .. seq .. ',' .. ARGV[3])
redis.call('HSET', KEYS[4], ARGV[1], seq .. ':' .. ARGV[2])

local meta_json = ARGV[4] .. seq .. '}'
for _, w in ipairs(writes) do
  redis.call('HSET', w[1], w[3], w[4])
  redis.call('HSET', w[2], w[3], meta_json)
end

if kind == 'add' then
  redis.call('HSET', KEYS[5], ARGV[6], ARGV[7])
  redis.call('DEL', KEYS[7], KEYS[8], KEYS[9])
  local n = tonumber(ARGV[8])
  for i = 0, n - 1 do
    redis.call('HSET', KEYS[7], ARGV[9 + i * 2], ARGV[10 + i * 2])
  end
elseif kind == 'remove' then
  redis.call('HDEL', KEYS[5], ARGV[6])
  redis.call('DEL', KEYS[7], KEYS[8], KEYS[9])
end

local out = {'ok', tostring(seq), redis.call('GET', KEYS[#KEYS]) or ''}
for _, v in ipairs(replaced) do out[#out + 1] = v end
return out
