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
-- Grants. Slots are units, kept in blocks of units free at one instant and
-- granted in grants `g<seq>:<n>` of n units that all start at one instant
-- (units whose starts lie within GRANT_SPAN_MS are gathered: at a high cap a
-- grant carries many permits, at a low one each is a grant of its own). Only
-- that grant can hand its units back, once; each unit rests from its own
-- request (the caller says when each rest began). A hand-back that comes
-- late (its lease ran out and the units were granted again), twice (a call
-- resent after a lost reply) or from a process that never held it changes
-- nothing.
--
-- Capacity. Every process says which tps it was configured with; the cap is
-- the lowest any process said in the last minute, so during a rolling change
-- a lowered cap holds from the first process that has it, and a raised one
-- once no process has said the old value for a minute. Slots above the cap
-- retire (keeping their rest) as they come back, and return when it rises.
--
-- Shape. Requests are paced (GCRA) at cap × rate per second with a short
-- burst, so load arrives evenly instead of all permits at once every second;
-- `rate` is cut in half by a 429 and climbs back by 0.1 per clean second
-- (AIMD), and paced flows (below) slow with it.
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
-- Pace (a second level: a campaign's budget inside the provider's). A paced
-- flow (a campaign with `pace`, src/domain/windows.ts) asks for permits of
-- its own: each is a provider slot and one of the flow's ⌈tps⌉ slots, which
-- rests ⌈tps⌉/tps seconds (plus the margin) from the same instant as the
-- provider's, so no sliding second at the provider sees more than ⌈tps⌉ of
-- the campaign's requests, whatever the rest of the cap does; its own GCRA
-- at tps spreads them evenly. Its grants are `<slot>:<seq>:<flow slot>:<id>`
-- and hand both slots back. The flow's state lives beside the provider's
-- (same hash tag) under `<state key>:pace:<id>` (free slots, `:r` retired
-- slots, `:s` its hash), and expires when the flow has been idle a while.
-- The paces of the flows sending now are kept for them: unpaced demand is
-- paced at what they leave of the cap, so a paced campaign gets its pace
-- however hard the others push, and the others get the rest. In a call,
-- paced flows ready to send take the provider's next slots first (their own
-- pace bounds them), then unpaced demand; a flow waiting for its own pace is
-- not demand that holds lower priority classes back.
--
-- Time is the state hash's steady clock (includes/clock.lua): rests, leases
-- and pauses are durations that a step of the server's wall clock cannot
-- cut short or stretch; skew between machines is harmless.
-- KEYS: 1 free zset (block → free at), 2 held zset (grant → lease end), 3 state hash, 4 retired zset (block → free at)
-- ARGV: 1 tps (this process's configuration), 2 wanted, 3 lease ms, 4 window ms (1000 + margin), 5 priority class,
--       6 breaker failures, 7 breaker cool-down ms, 8 breaker max cool-down ms, 9 lead ms,
--       10 the steady time this caller can vouch for (includes/clock.lua), or -1,
--       11 count of grants handed back, 12 count of paced flows,
--       then (flow id, wanted, tps) per paced flow,
--       then (grant, rests, outcomes) per grant handed back: rests `n:ago` (n units whose rest began
--       `ago` ms before this call) and `n@t` (n units never used, free at t), comma separated;
--       outcomes one letter per unit used (s healthy answer, t transient failure, n neither)
-- Returns {nowMs, retryAtMs or -1, grant, units, startMs, grant, units, startMs, …}
-- @include clock

local STEP_MS, TPS_MEMORY_MS = 250, 60000
local vouched = tonumber(ARGV[10])
local now = steadyMs(KEYS[3], STEP_MS, vouched >= 0 and vouched or nil)
local myTps, want, leaseMs, windowMs = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local class = tonumber(ARGV[5])
local failuresToOpen, coolDownMs, maxCoolDownMs = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local lead = tonumber(ARGV[9])
local YIELD_MS, BURST_MS = 100, 20
-- Paced flows' GCRA runs this much faster than their pace, and this much over
-- their paces is kept from unpaced demand (measured: with neither, a paced
-- flow beside a busy unpaced one got 98% of its pace on an idle machine and
-- under 97% on a loaded one, each bound at the pace losing what the others'
-- jitter costs).
local FLOW_HEADROOM = 1.03

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

-- Units. A slot of the cap is a unit; units are stored in blocks (`b<seq>:<n>`:
-- n units free at the same instant, the block's score), and granted in
-- grants (`g<seq>:<n>`) of units whose starts lie within GRANT_SPAN_MS of
-- each other: at a high cap one zset member stands for many permits, at a
-- low one (starts more than the span apart) each grant is one permit as
-- before. Members of the earlier layout (a bare slot number, a grant
-- `<slot>:<seq>`) are one unit each and are read as such.
-- Units created: `slots`; retired (in the retired zset): `retired`; the rest
-- (free or held) are active, never more than the cap once the held come back.
local GRANT_SPAN_MS = 2
local function unitsOf(member)
  local n = string.match(member, '^[bg]%d+:(%d+)')
  return n and tonumber(n) or 1
end
local blockSeq = num('blockSeq', 0)
local function block(units)
  blockSeq = blockSeq + 1
  return 'b' .. blockSeq .. ':' .. units
end
-- Moves `units` units from the blocks of `source` to `target` (those free
-- soonest first), each keeping its free-at time; splits the last block.
-- Returns how many moved (fewer when the source has fewer).
local function moveUnits(source, target, units)
  local moved = 0
  while moved < units do
    local first = redis.call('ZRANGE', source, 0, 0, 'WITHSCORES')
    if not first[1] then break end
    local n = unitsOf(first[1])
    local take = math.min(n, units - moved)
    redis.call('ZREM', source, first[1])
    redis.call('ZADD', target, first[2], block(take))
    if take < n then redis.call('ZADD', source, first[2], block(n - take)) end
    moved = moved + take
  end
  return moved
end
local slots = num('slots', num('tps', 0))
local retired = tonumber(state.retired or '')
if not retired then
  -- The earlier layout kept no count: one unit per member.
  retired = 0
  for _, member in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do retired = retired + unitsOf(member) end
end
local retiredBefore = state.retired and retired or -1
if cap < slots - retired then
  -- Free units retire now; held ones as they come back.
  retired = retired + moveUnits(KEYS[1], KEYS[4], slots - retired - cap)
elseif cap > slots - retired and retired > 0 then
  retired = retired - moveUnits(KEYS[4], KEYS[1], math.min(retired, cap - (slots - retired)))
end
if cap > slots - retired then
  redis.call('ZADD', KEYS[1], 0, block(cap - (slots - retired)))
  slots = cap + retired
  set('slots', slots)
end
-- Audit, once a minute: the units the three zsets hold against `slots`.
-- Every step here keeps them equal; a process still running the earlier
-- layout's script does not: it takes a block for one slot and, handing it
-- back, fails to read it after taking it off the held set — units lost,
-- never granted twice. Missing units come back free after a whole window
-- of rest (their requests are long done), so a rolling upgrade costs at most
-- a minute of part of the cap, never a request over it.
local AUDIT_MS = 60000
if now - num('auditAt', 0) >= AUDIT_MS then
  set('auditAt', now)
  local held = 0
  for _, key in ipairs({ KEYS[1], KEYS[2] }) do
    for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do held = held + unitsOf(member) end
  end
  retired = 0
  for _, member in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do retired = retired + unitsOf(member) end
  retiredBefore = -1
  if held + retired < slots then redis.call('ZADD', KEYS[1], now + windowMs, block(slots - held - retired)) end
end
if retired ~= retiredBefore then set('retired', retired) end
if num('cap', -1) ~= cap then set('cap', cap) end

-- Moves a paced flow's free slots in [from, to) between its free and retired zsets, each keeping its free-at time.
local function moveSlots(source, target, from, to)
  for slot = from, to - 1 do
    local freeAt = redis.call('ZSCORE', source, slot)
    if freeAt then
      redis.call('ZREM', source, slot)
      redis.call('ZADD', target, freeAt, slot)
    end
  end
end

-- A grant: its units, and for a paced flow's grant (one unit) its flow slot and flow id.
local function parseGrant(grant)
  local _, _, fslot, flow = string.match(grant, '^(g?%d+):(%d+):(%d+):(.+)$')
  return (string.sub(grant, 1, 1) == 'g') and unitsOf(grant) or 1, tonumber(fslot), flow
end


-- Paced flows: their keys, and their state as this call found it.
local FLOW_IDLE_MS = 600000
local flows = {}
local function flowOf(id)
  local flow = flows[id]
  if flow then return flow end
  local base = KEYS[3] .. ':pace:' .. id
  flow = { id = id, free = base, retired = base .. ':r', hash = base .. ':s', want = 0 }
  local f = redis.call('HMGET', flow.hash, 'tps', 'slots', 'active', 'paceAt')
  flow.tps = tonumber(f[1] or '') or 0
  flow.slots = tonumber(f[2] or '') or 0
  flow.active = tonumber(f[3] or '') or flow.slots
  flow.tat = tonumber(f[4] or '') or 0
  flows[id] = flow
  return flow
end
-- How long a flow slot rests: ⌈tps⌉ slots cover tps a second.
local function flowWindow(flow)
  if flow.tps <= 0 then return windowMs end
  return windowMs - 1000 + math.ceil(1000 * math.max(1, math.ceil(flow.tps)) / flow.tps)
end

-- One command over many members: `args` in chunks (Lua's unpack has a limit), each chunk after `head`.
local CHUNK = 2000
local function batched(command, key, args, width)
  local per = CHUNK - CHUNK % width
  for from = 1, #args, per do
    redis.call(command, key, unpack(args, from, math.min(#args, from + per - 1)))
  end
end

-- Only the grant that holds units can return them, and only once. Hand-backs
-- are gathered (`back`) and applied together (`applyBacks`): a call per key
-- for all of them, and one block per instant the units are free again.
-- `parts`: {units, free at, rest start or false} — a grant's units may rest
-- from different instants (their answers came apart).
local back = { grants = {}, parts = {}, seen = {} }
local function giveBack(grant, parts)
  if back.seen[grant] then return end
  back.seen[grant] = true
  local n = #back.grants + 1
  back.grants[n], back.parts[n] = grant, parts
end
local function applyBacks()
  local grants = back.grants
  if #grants == 0 then return end
  local held = {}
  for from = 1, #grants, CHUNK do
    local scores = redis.call('ZMSCORE', KEYS[2], unpack(grants, from, math.min(#grants, from + CHUNK - 1)))
    for k = 1, #scores do held[from + k - 1] = scores[k] ~= false end
  end
  local removed, toFree, toRetire = {}, {}, {}
  local function place(units, freeAt)
    -- Units above the cap (it fell while they were out) retire, keeping their rest.
    local over = math.min(units, slots - retired - cap)
    if over > 0 then
      toRetire[freeAt] = (toRetire[freeAt] or 0) + over
      retired = retired + over
      units = units - over
    end
    if units > 0 then toFree[freeAt] = (toFree[freeAt] or 0) + units end
  end
  for n = 1, #grants do
    if held[n] then
      local grant = grants[n]
      removed[#removed + 1] = grant
      local units, fslot, id = parseGrant(grant)
      local parts, given = back.parts[n], 0
      for _, part in ipairs(parts) do
        local k = math.min(part[1], units - given)
        if k > 0 then
          place(k, part[2])
          given = given + k
        end
      end
      -- Units the caller did not account for rest a whole window from now.
      if given < units then place(units - given, now + windowMs) end
      if fslot then
        -- A paced flow's grant is one unit: its flow slot rests from the same instant.
        local flow, part = flowOf(id), parts[1] or { 1, now + windowMs, now }
        local at = part[3] and part[3] + flowWindow(flow) or part[2]
        -- A slot above the flow's count (its pace fell while it was out) retires, keeping its rest.
        redis.call('ZADD', fslot < flow.active and flow.free or flow.retired, at, fslot)
      end
    end
  end
  batched('ZREM', KEYS[2], removed, 1)
  local free, retiring = {}, {}
  for freeAt, units in pairs(toFree) do
    free[#free + 1] = freeAt
    free[#free + 1] = block(units)
  end
  for freeAt, units in pairs(toRetire) do
    retiring[#retiring + 1] = freeAt
    retiring[#retiring + 1] = block(units)
  end
  batched('ZADD', KEYS[1], free, 2)
  batched('ZADD', KEYS[4], retiring, 2)
  if #retiring > 0 then set('retired', retired) end
  back = { grants = {}, parts = {}, seen = {} }
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

local handed = tonumber(ARGV[11])
local pacedCount = tonumber(ARGV[12])
local paced = {}
for j = 0, pacedCount - 1 do
  local flow = flowOf(ARGV[13 + j * 3])
  flow.want = tonumber(ARGV[14 + j * 3])
  -- A pace above the cap is the cap (and ⌈tps⌉ slots of a huge pace would be as many calls here).
  flow.tps = math.min(tonumber(ARGV[15 + j * 3]), cap)
  paced[#paced + 1] = flow
end
local i = 13 + pacedCount * 3
local streak = num('streak', 0)
for _ = 1, handed do
  local grant, rests, outcomes = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local parts = {}
  for units, kind, value in string.gmatch(rests, '(%d+)([:@])(%d+)') do
    value = tonumber(value)
    if kind == ':' then
      -- Used: rests a window from when its rest began, `value` ms before this call.
      parts[#parts + 1] = { tonumber(units), now - value + windowMs, now - value }
    else
      -- Never used, so no rest: free again when it was due to be free anyway.
      parts[#parts + 1] = { tonumber(units), math.max(now, value), false }
    end
  end
  giveBack(grant, parts)
  local probe = isProbe(grant)
  if outcomes == '' then
    -- A probe never used says nothing: let another one go.
    if state.probe == grant then set('probe', '') end
  else
    -- All healthy (the usual case) is one healthy answer for the breaker: the streak ends either way.
    for outcome in string.gmatch(string.find(outcomes, '[tn]') and outcomes or 's', '.') do
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
    end
  end
  i = i + 3
end
if streak ~= num('streak', 0) then set('streak', streak) end
applyBacks()
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
for j = 1, #expired, 2 do
  local leaseEnd = tonumber(expired[j + 1])
  giveBack(expired[j], { { parseGrant(expired[j]), leaseEnd + windowMs, leaseEnd } })
  -- A probe whose holder died says nothing: let another one go.
  if state.probe == expired[j] then set('probe', '') end
end
applyBacks()

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
  if blockSeq ~= num('blockSeq', 0) then set('blockSeq', blockSeq) end
  if #changed > 0 then redis.call('HSET', KEYS[3], unpack(changed)) end
  for _, flow in pairs(flows) do
    redis.call('HSET', flow.hash, 'tps', flow.tps, 'slots', flow.slots, 'active', flow.active, 'paceAt', flow.tat)
    local idle = math.max(FLOW_IDLE_MS, 2 * flowWindow(flow))
    for _, key in ipairs({ flow.free, flow.retired, flow.hash }) do redis.call('PEXPIRE', key, idle) end
  end
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

local genericWant = want
for _, flow in ipairs(paced) do want = want + flow.want end
if want <= 0 then return reply(-1) end
-- A half-open breaker lets one probe through, whoever asks.
local maxGrants = breaker == 'half' and 1 or want

-- A paced flow's slots: ⌈tps⌉ of them, the rest retired (keeping their rest) until the pace rises again.
for _, flow in ipairs(paced) do
  local n = math.max(1, math.ceil(flow.tps))
  if n < flow.active then
    moveSlots(flow.free, flow.retired, n, flow.active)
  elseif n > flow.active then
    moveSlots(flow.retired, flow.free, flow.active, math.min(n, flow.slots))
  end
  for slot = flow.slots, n - 1 do redis.call('ZADD', flow.free, 0, slot) end
  if n > flow.slots then flow.slots = n end
  flow.active = n
  -- Its own GCRA, slowed with the provider's after a 429; a short burst only: a spread is even, a late start catches up at most this much.
  -- It runs FLOW_HEADROOM faster than the pace: the slots hold the pace, the GCRA only spreads it (two bounds at one rate
  -- each lose what the other's jitter costs).
  flow.interval = 1000 / (flow.tps * rate * FLOW_HEADROOM)
  flow.burst = BURST_MS
end
-- When a paced flow could next start (its next free slot and its own pace), and that slot.
local function flowStart(flow)
  if flow.want <= 0 then return nil end
  local first = redis.call('ZRANGE', flow.free, 0, 0, 'WITHSCORES')
  if not first[2] then return nil end
  return math.max(now, tonumber(first[2]), flow.tat - flow.burst), first[1]
end

-- The paces of flows sending now (asked in the last PACED_MEMORY_MS) are
-- kept for them: unpaced demand is shaped at what they leave of the cap, so a
-- paced campaign gets its pace however hard the others push (at most 95% of
-- the cap is kept: paces that add up to more share the cap's slots).
local PACED_MEMORY_MS = 500
local asking = {}
for _, flow in ipairs(paced) do
  asking[flow.id] = true
  set('pc:' .. flow.id, flow.tps .. ':' .. now)
end
local reserved = 0
for field, value in pairs(state) do
  local id = string.match(field, '^pc:(.+)$')
  if id then
    local tps, at = string.match(value, '^([^:]+):(%d+)$')
    if asking[id] then
      reserved = reserved + tonumber(tps)
    elseif not at or now - tonumber(at) > PACED_MEMORY_MS then
      redis.call('HDEL', KEYS[3], field)
    else
      reserved = reserved + tonumber(tps)
    end
  end
end
-- A little over the paces: slots cycle a few ms over their second, so a cap's
-- slots carry a little under the cap, and that shortfall must not fall on the paced.
reserved = math.min(reserved * FLOW_HEADROOM, 0.95 * cap) * rate

local interval = 1000 / (cap * rate - reserved)
local burst = math.max(BURST_MS, interval)
-- TAT of unpaced demand's GCRA: a request may start at TAT - burst at the earliest.
local tat = num('paceAt', 0)
local horizon = now + lead
local candidates = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', horizon, 'WITHSCORES', 'LIMIT', 0, want)
local granted, taken, leased, leftover = {}, {}, {}, {}
local grantedUnits = 0
local seq = num('grantSeq', 0)
local pacedAt = 1
-- Whether the provider's slots ran out before the demand did (not the flows' own paces).
local providerShort = true
-- (ms timestamps near 2^41 carry float error of ~0.0002 ms: ceil after a
-- 0.01 ms allowance keeps rounding from pushing a start past the horizon)
local function startAt(t) return math.ceil(t - 0.01) end
-- A grant's units all start at its last unit's start: none starts before its unit is free and its pace allows it.
local function grantOf(name, units, start)
  leased[#leased + 1] = now + leaseMs
  leased[#leased + 1] = name
  granted[#granted + 1] = name
  granted[#granted + 1] = units
  granted[#granted + 1] = start
end
-- Unpaced units being gathered into one grant: their starts lie within GRANT_SPAN_MS of the first's.
local gathering = nil
local function endGathering()
  if not gathering then return end
  seq = seq + 1
  grantOf('g' .. seq .. ':' .. gathering.units, gathering.units, gathering.last)
  gathering = nil
end
local stop = false
for j = 1, #candidates, 2 do
  if stop or grantedUnits >= maxGrants then break end
  local member, units = candidates[j], unitsOf(candidates[j])
  local slotStart = math.max(now, tonumber(candidates[j + 1]))
  if slotStart > horizon then break end
  local used = 0
  while used < units and grantedUnits < maxGrants do
    -- Who takes this unit: a paced flow ready by then (in turn), else unpaced
    -- demand, else the paced flow ready soonest within the lead.
    local taker, takerSlot, start = nil, nil, nil
    local soonest, soonestSlot, soonestAt = nil, nil, nil
    for k = 0, #paced - 1 do
      local flow = paced[(pacedAt + k - 1) % #paced + 1]
      local at, fslot = flowStart(flow)
      if at and at <= slotStart then
        taker, takerSlot, start = flow, fslot, slotStart
        pacedAt = (pacedAt + k) % #paced + 1
        break
      elseif at and at <= horizon and (not soonestAt or at < soonestAt) then
        soonest, soonestSlot, soonestAt = flow, fslot, at
      end
    end
    local genericStart = math.max(slotStart, tat - burst)
    if not taker and genericWant > 0 and genericStart <= horizon and (not soonestAt or genericStart <= soonestAt) then
      start = genericStart
    elseif not taker and soonest then
      taker, takerSlot, start = soonest, soonestSlot, soonestAt
    end
    if not start then
      -- Nobody can use this unit within the lead: the demand left waits for its own pace.
      providerShort = false
      stop = true
      break
    end
    start = startAt(start)
    if taker then
      seq = seq + 1
      grantOf('g' .. seq .. ':1:' .. takerSlot .. ':' .. taker.id, 1, start)
      redis.call('ZREM', taker.free, takerSlot)
      taker.want = taker.want - 1
      taker.tat = math.max(taker.tat, start) + taker.interval
    else
      genericWant = genericWant - 1
      tat = math.max(tat, start) + interval
      if gathering and start - gathering.first <= GRANT_SPAN_MS then
        gathering.units = gathering.units + 1
        gathering.last = start
      else
        endGathering()
        gathering = { units = 1, first = start, last = start }
      end
    end
    used = used + 1
    grantedUnits = grantedUnits + 1
  end
  if used > 0 then
    taken[#taken + 1] = member
    -- What the grants left of the block stays free at its time.
    if used < units then
      leftover[#leftover + 1] = candidates[j + 1]
      leftover[#leftover + 1] = block(units - used)
    end
  end
end
endGathering()
-- The blocks granted leave the free set (what is left of a block comes back as one), and the grants are held.
batched('ZREM', KEYS[1], taken, 1)
batched('ZADD', KEYS[1], leftover, 2)
batched('ZADD', KEYS[2], leased, 2)
if #granted > 0 then
  set('paceAt', tat)
  set('grantSeq', seq)
  if breaker == 'half' then set('probe', granted[1]) end
end
-- Demand the provider left wanting (not a flow waiting for its own pace) holds lower classes back.
local nextFree = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local slotNext = nextFree[2] and tonumber(nextFree[2]) or nil
local retryAt = -1
local function wantFrom(at)
  if at and (retryAt < 0 or at < retryAt) then retryAt = at end
end
if genericWant > 0 then
  wantFrom(slotNext and math.max(tat - burst, slotNext) or nil)
  if providerShort or tat - burst > horizon then set('demand' .. class, now) end
end
for _, flow in ipairs(paced) do
  local at = flowStart(flow)
  if at then
    if at <= horizon and providerShort then set('demand' .. class, now) end
    wantFrom(slotNext and math.max(at, slotNext) or nil)
  end
end
-- When asking again can get more: the pace allows one more and a permit is (nearly) free.
if retryAt >= 0 then retryAt = retryAt - lead end
return reply(math.ceil(retryAt), granted)
