-- The global rate limiter of one provider: `tps` permits, each usable by one
-- request at a time and free again only one second after that request
-- completed. Since a request reaches the provider before it completes, two
-- requests on the same permit arrive more than a second apart, so no sliding
-- second at the provider sees more than `tps` requests — whatever the delay
-- between grant and arrival. All times are this server's clock (TIME).
-- One call returns permits, leases new ones, and recovers the permits of
-- holders that died (free one second after their lease ended).
-- KEYS: 1 free zset (id → free at), 2 held zset (id → lease end), 3 config hash
-- ARGV: 1 tps, 2 permits wanted, 3 lease ms, 4 window ms (1000 + margin),
--       5 count of completed permits, then (id, ms since it completed) pairs,
--       then ids leased but never used
-- Returns {nowMs, nextFreeMs or -1, id, id, …}

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tps, want, leaseMs, windowMs = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

local capacity = tonumber(redis.call('HGET', KEYS[3], 'tps') or '0')
if capacity < tps then
  local batch = {}
  for id = capacity, tps - 1 do
    batch[#batch + 1] = 0
    batch[#batch + 1] = id
    if #batch >= 2000 then redis.call('ZADD', KEYS[1], unpack(batch)); batch = {} end
  end
  if #batch > 0 then redis.call('ZADD', KEYS[1], unpack(batch)) end
  redis.call('HSET', KEYS[3], 'tps', tps)
elseif capacity > tps then
  -- Permits above the new cap are retired as they come back.
  for id = tps, capacity - 1 do redis.call('ZREM', KEYS[1], id) end
  redis.call('HSET', KEYS[3], 'tps', tps)
end

local function giveBack(id, freeAt)
  if redis.call('ZREM', KEYS[2], id) == 1 and tonumber(id) < tps then
    redis.call('ZADD', KEYS[1], freeAt, id)
  end
end

local completed = tonumber(ARGV[5])
local i = 6
for _ = 1, completed do
  giveBack(ARGV[i], now - tonumber(ARGV[i + 1]) + windowMs)
  i = i + 2
end
for j = i, #ARGV do giveBack(ARGV[j], now) end

local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
for j = 1, #expired, 2 do giveBack(expired[j], tonumber(expired[j + 1]) + windowMs) end

local out = { now, -1 }
local pausedUntil = tonumber(redis.call('HGET', KEYS[3], 'pausedUntil') or '0')
if pausedUntil > now then
  out[2] = pausedUntil
  return out
end

if want > 0 then
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, want)
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], now + leaseMs, id)
    out[#out + 1] = id
  end
end
local nextFree = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nextFree[2] then out[2] = tonumber(nextFree[2]) end
return out
