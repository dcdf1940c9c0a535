-- The global rate limiter of one provider (all workers, all machines).
--
-- Cap. `cap` permit slots; a slot serves one request at a time and is free
-- again only one second (plus a margin) after the provider may have counted
-- that request — the instant the client hands back with it (permit-limiter.ts:
-- the departure plus the provider's arrival margin, or the answer less the
-- fastest answer time when later, never later than the answer). So two
-- requests on one slot arrive more than a second apart and no sliding second
-- at the provider sees more than `cap` of them, whatever the delay between
-- grant and departure.
--
-- Grants. Each grant of a slot is a permit of its own, `<slot>:<seq>`: only
-- that grant can hand its slot back, once. A hand-back that comes late (its
-- lease ran out and the slot was granted again), twice (a call resent after
-- a lost reply) or from a process that never held it changes nothing.
--
-- Capacity. Every process says which tps it was configured with; the cap is
-- the lowest any process said in the last minute, so during a rolling change
-- a lowered cap holds from the first process that has it, and a raised one
-- once no process has said the old value for a minute. Slots above the cap
-- retire (keeping their rest) as they come back, and return when it rises.
--
-- Shape. Requests are paced (GCRA) at cap × rate per second with a short
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
-- opens it again for twice as long, and one that says neither (a 429, a
-- refused stream) or never comes back lets the next probe go.
--
-- Priority. A call of priority class p (0 highest) gets nothing while a
-- higher class was left wanting in the last `yield` ms.
--
-- Time is the state hash's steady clock (includes/clock.lua): rests, leases
-- and pauses are durations that a step of the server's wall clock cannot
-- cut short or stretch; skew between machines is harmless.
-- KEYS: 1 free zset (slot → free at), 2 held zset (grant → lease end), 3 state hash, 4 retired zset (slot → free at)
-- ARGV: 1 tps (this process's configuration), 2 wanted, 3 lease ms, 4 window ms (1000 + margin), 5 priority class,
--       6 breaker failures, 7 breaker cool-down ms, 8 breaker max cool-down ms, 9 lead ms,
--       10 the steady time this caller can vouch for (includes/clock.lua), or -1,
--       11 count of completed permits, then (grant, ms since its rest began, outcome) triples
--       (outcome: s healthy answer, t transient failure, n neither),
--       then (grant, free at) pairs of permits leased but never used
-- Returns {nowMs, retryAtMs or -1, grant, startMs, grant, startMs, …}
-- @include clock

local STEP_MS, TPS_MEMORY_MS = 250, 60000
local vouched = tonumber(ARGV[10])
local now = steadyMs(KEYS[3], STEP_MS, vouched >= 0 and vouched or nil)
local myTps, want, leaseMs, windowMs = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
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

-- The cap: the lowest tps announced in the last minute (this call's included).
set('tps:' .. myTps, now)
local cap = myTps
for field, value in pairs(state) do
  local announced = string.match(field, '^tps:(%d+)$')
  if announced then
    if now - tonumber(value) > TPS_MEMORY_MS then
      redis.call('HDEL', KEYS[3], field)
    elseif tonumber(announced) < cap then
      cap = tonumber(announced)
    end
  end
end

-- Slots [0, slots) exist; each is in exactly one of free, held (as a grant) or retired.
local slots = num('slots', num('tps', 0))
local active = num('cap', slots)
-- Moves the free slots in [from, to) between the free and retired zsets, each keeping its free-at time.
local function moveSlots(source, target, from, to)
  for slot = from, to - 1 do
    local freeAt = redis.call('ZSCORE', source, slot)
    if freeAt then
      redis.call('ZREM', source, slot)
      redis.call('ZADD', target, freeAt, slot)
    end
  end
end
if cap < active then
  moveSlots(KEYS[1], KEYS[4], cap, active)
elseif cap > active then
  moveSlots(KEYS[4], KEYS[1], active, math.min(cap, slots))
end
if cap > slots then
  local batch = {}
  for slot = slots, cap - 1 do
    batch[#batch + 1] = 0
    batch[#batch + 1] = slot
    if #batch >= 2000 then redis.call('ZADD', KEYS[1], unpack(batch)); batch = {} end
  end
  if #batch > 0 then redis.call('ZADD', KEYS[1], unpack(batch)) end
  slots = cap
  set('slots', slots)
end
if cap ~= active then set('cap', cap) end

local function slotOf(grant)
  local sep = string.find(grant, ':', 1, true)
  return tonumber(sep and string.sub(grant, 1, sep - 1) or grant)
end

-- Only the grant that holds a slot can return it, and only once.
local function giveBack(grant, freeAt)
  if redis.call('ZREM', KEYS[2], grant) == 0 then return end
  local slot = slotOf(grant)
  if slot < cap then redis.call('ZADD', KEYS[1], freeAt, slot) else redis.call('ZADD', KEYS[4], freeAt, slot) end
end

local breaker = state.breaker or 'closed'
local function open(coolDown)
  breaker = 'open'
  set('breaker', 'open')
  set('coolDown', coolDown)
  set('openUntil', now + coolDown)
  set('probe', '')
end
local function isProbe(grant) return breaker == 'half' and (state.probe or '') == grant end

local completed = tonumber(ARGV[11])
local i = 12
local streak = num('streak', 0)
for _ = 1, completed do
  local grant, ago, outcome = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  giveBack(grant, now - ago + windowMs)
  local probe = isProbe(grant)
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
  elseif probe then
    -- A probe that says nothing about the provider's health: let another one go.
    set('probe', '')
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

-- Additive increase: +0.1 of the cap per second since the last 429 (after a one-second hold).
local rate = num('rate', 1)
if rate < 1 then
  local from = math.max(num('rateAt', now), num('penaltyAt', 0) + 1000)
  if now > from then
    rate = math.min(1, rate + 0.1 * (now - from) / 1000)
    set('rate', rate)
    set('rateAt', now)
  end
end

local function reply(retryAt, grants)
  if #changed > 0 then redis.call('HSET', KEYS[3], unpack(changed)) end
  local out = { now, retryAt }
  for _, v in ipairs(grants or {}) do out[#out + 1] = v end
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

local interval = 1000 / (cap * rate)
local burst = math.max(BURST_MS, interval)
-- TAT of GCRA: a request may start at TAT - burst at the earliest.
local tat = num('paceAt', 0)
local horizon = now + lead
local candidates = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', horizon, 'WITHSCORES', 'LIMIT', 0, want)
local granted = {}
local seq = num('grantSeq', 0)
for j = 1, #candidates, 2 do
  -- (ms timestamps near 2^41 carry float error of ~0.0002 ms: ceil after a
  -- 0.01 ms allowance keeps rounding from pushing a start past the horizon)
  local start = math.ceil(math.max(now, tonumber(candidates[j + 1]), tat - burst) - 0.01)
  if start > horizon then break end
  seq = seq + 1
  local grant = candidates[j] .. ':' .. seq
  redis.call('ZREM', KEYS[1], candidates[j])
  redis.call('ZADD', KEYS[2], now + leaseMs, grant)
  granted[#granted + 1] = grant
  granted[#granted + 1] = start
  tat = math.max(tat, start) + interval
end
if #granted > 0 then
  set('paceAt', tat)
  set('grantSeq', seq)
  if breaker == 'half' then set('probe', granted[1]) end
end
if #granted / 2 < want then set('demand' .. class, now) end

-- When asking again can get more: the pace allows one more and a permit is (nearly) free.
local retryAt = -1
local nextFree = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nextFree[2] then retryAt = math.max(tat - burst, tonumber(nextFree[2])) - lead end
return reply(math.ceil(retryAt), granted)
