-- The global rate limiter of one provider (all workers, all machines).
--
-- Cap. `tps` permits; a permit serves one request at a time and is free again
-- only one second (plus a margin) after that request completed. A request
-- reaches the provider before it completes, so two requests on one permit
-- arrive more than a second apart and no sliding second at the provider sees
-- more than `tps` of them, whatever the delay between grant and arrival.
--
-- Shape. Requests are paced (GCRA) at tps × rate per second with a short
-- burst, so load arrives evenly instead of all permits at once every second;
-- `rate` is cut in half by a 429 and climbs back by 0.1 per clean second (AIMD).
--
-- Lead. Each permit is granted with a start time: the later of when it is
-- free and when the pace allows it. A grant may come up to `lead` ms before
-- its start; the worker claims its recipient meanwhile and sends no earlier
-- than the start, so neither the claim's round trip nor a late wake-up is
-- lost from the permit's cycle or the pace.
--
-- Health. Consecutive transient failures open a circuit breaker: no grants
-- until a cool-down ends, then one probe; a good probe closes it, a bad one
-- opens it again for twice as long.
--
-- Priority. A call of priority class p (0 highest) gets nothing while a
-- higher class was left wanting in the last `yield` ms.
--
-- All times are this server's clock (TIME): skew between machines is harmless.
-- KEYS: 1 free zset (id → free at), 2 held zset (id → lease end), 3 state hash
-- ARGV: 1 tps, 2 wanted, 3 lease ms, 4 window ms (1000 + margin), 5 priority class,
--       6 breaker failures, 7 breaker cool-down ms, 8 breaker max cool-down ms, 9 lead ms,
--       10 count of completed permits, then (id, ms since completion, outcome) triples
--       (outcome: s healthy answer, t transient failure, n neither),
--       then (id, free at) pairs of permits leased but never used
-- Returns {nowMs, retryAtMs or -1, id, startMs, id, startMs, …}

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tps, want, leaseMs, windowMs = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local class = tonumber(ARGV[5])
local failuresToOpen, coolDownMs, maxCoolDownMs = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local lead = tonumber(ARGV[9])
local YIELD_MS, BURST_MS = 100, 20

local state = {}
do
  local raw = redis.call('HGETALL', KEYS[3])
  for i = 1, #raw, 2 do state[raw[i]] = raw[i + 1] end
end
local function num(field, default) return tonumber(state[field] or '') or default end
local changed = {}
local function set(field, value)
  state[field] = value
  changed[#changed + 1] = field
  changed[#changed + 1] = value
end

-- Capacity follows the configured tps; permits above a lowered cap retire as they come back.
local capacity = num('tps', 0)
if capacity < tps then
  local batch = {}
  for id = capacity, tps - 1 do
    batch[#batch + 1] = 0
    batch[#batch + 1] = id
    if #batch >= 2000 then redis.call('ZADD', KEYS[1], unpack(batch)); batch = {} end
  end
  if #batch > 0 then redis.call('ZADD', KEYS[1], unpack(batch)) end
  set('tps', tps)
elseif capacity > tps then
  for id = tps, capacity - 1 do redis.call('ZREM', KEYS[1], id) end
  set('tps', tps)
end

local function giveBack(id, freeAt)
  if redis.call('ZREM', KEYS[2], id) == 1 and tonumber(id) < tps then
    redis.call('ZADD', KEYS[1], freeAt, id)
  end
end

local breaker = state.breaker or 'closed'
local function open(coolDown)
  breaker = 'open'
  set('breaker', 'open')
  set('coolDown', coolDown)
  set('openUntil', now + coolDown)
  set('probe', '')
end

local completed = tonumber(ARGV[10])
local i = 11
local streak = num('streak', 0)
for _ = 1, completed do
  local id, ago, outcome = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  giveBack(id, now - ago + windowMs)
  local probe = breaker == 'half' and state.probe == id
  if outcome == 's' then
    streak = 0
    if probe then
      breaker = 'closed'
      set('breaker', 'closed')
      set('coolDown', coolDownMs)
      set('probe', '')
    end
  elseif outcome == 't' then
    streak = streak + 1
    if probe then
      open(math.min(maxCoolDownMs, num('coolDown', coolDownMs) * 2))
    elseif breaker == 'closed' and streak >= failuresToOpen then
      open(coolDownMs)
    end
  end
  i = i + 3
end
if streak ~= num('streak', 0) then set('streak', streak) end
for j = i, #ARGV, 2 do
  -- Never used, so no rest: free again when it was due to be free anyway.
  giveBack(ARGV[j], math.max(now, tonumber(ARGV[j + 1])))
  if state.probe == ARGV[j] then set('probe', '') end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
for j = 1, #expired, 2 do
  giveBack(expired[j], tonumber(expired[j + 1]) + windowMs)
  -- A probe whose holder died says nothing: let another one go.
  if state.probe == expired[j] then set('probe', '') end
end

-- Additive increase: +0.1 of tps per second since the last 429 (after a one-second hold).
local rate = num('rate', 1)
if rate < 1 then
  local from = math.max(num('rateAt', now), num('penaltyAt', 0) + 1000)
  if now > from then
    rate = math.min(1, rate + 0.1 * (now - from) / 1000)
    set('rate', rate)
    set('rateAt', now)
  end
end

local function reply(retryAt, ids)
  if #changed > 0 then redis.call('HSET', KEYS[3], unpack(changed)) end
  local out = { now, retryAt }
  for _, v in ipairs(ids or {}) do out[#out + 1] = v end
  return out
end

local pausedUntil = num('pausedUntil', 0)
if pausedUntil > now then return reply(pausedUntil) end

if breaker == 'open' then
  if now < num('openUntil', 0) then return reply(num('openUntil', now)) end
  breaker = 'half'
  set('breaker', 'half')
  set('probe', '')
end
if breaker == 'half' then
  if (state.probe or '') ~= '' then return reply(now + YIELD_MS) end
  want = math.min(want, 1)
end

for higher = 0, class - 1 do
  if now - num('demand' .. higher, 0) < YIELD_MS then return reply(now + YIELD_MS / 2) end
end

if want <= 0 then return reply(-1) end

local interval = 1000 / (tps * rate)
local burst = math.max(BURST_MS, interval)
-- TAT of GCRA: a request may start at TAT - burst at the earliest.
local tat = num('paceAt', 0)
local horizon = now + lead
local candidates = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', horizon, 'WITHSCORES', 'LIMIT', 0, want)
local granted = {}
for j = 1, #candidates, 2 do
  -- (ms timestamps near 2^41 carry float error of ~0.0002 ms: ceil after a
  -- 0.01 ms allowance keeps rounding from pushing a start past the horizon)
  local start = math.ceil(math.max(now, tonumber(candidates[j + 1]), tat - burst) - 0.01)
  if start > horizon then break end
  redis.call('ZREM', KEYS[1], candidates[j])
  redis.call('ZADD', KEYS[2], now + leaseMs, candidates[j])
  granted[#granted + 1] = candidates[j]
  granted[#granted + 1] = start
  tat = math.max(tat, start) + interval
end
if #granted > 0 then
  set('paceAt', tat)
  if breaker == 'half' then set('probe', granted[1]) end
end
if #granted / 2 < want then set('demand' .. class, now) end

-- When asking again can get more: the pace allows one more and a permit is (nearly) free.
local retryAt = -1
local nextFree = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nextFree[2] then retryAt = math.max(tat - burst, tonumber(nextFree[2])) - lead end
return reply(math.ceil(retryAt), granted)
