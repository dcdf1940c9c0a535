-- Time, for every script.
--
-- `wallMs` is the server's clock (TIME): for calendar instants — when a run
-- began, when a recipient is due after quiet hours or a backoff, when a
-- schedule fires.
--
-- `steadyMs` measures durations — permit leases and rests, pacing, pauses —
-- on a clock kept in a hash beside what it times. It follows TIME, but never
-- runs backwards, and a move of more than `maxStep` ms since the last call
-- (longer than any caller waits while it has work: the wall clock stepped,
-- or nobody called for a while) is taken only as far as the caller can
-- vouch for: `vouched` is the steady time it last saw plus the time its own
-- monotonic clock measured since (nil when it has none: then `maxStep`). So
-- a step of the wall clock (an NTP step, a failover to a node whose clock
-- differs) neither ends every rest at once nor stretches them by its size.
local function wallMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A steady clock that read `clk` when the wall clock read `last`, moved to
-- the wall clock's `wall`: never backwards, and by at most `maxStep` (nil:
-- unbounded) beyond what `vouched` allows. A clock never read starts at `wall`.
local function advanceClock(clk, last, wall, maxStep, vouched)
  if not (clk and last) then return wall end
  local step = math.max(wall - last, 0)
  if maxStep and step > maxStep then
    if vouched then step = math.max(0, math.min(step, vouched - clk)) else step = maxStep end
  end
  return clk + step
end

local function steadyMs(hashKey, maxStep, vouched)
  local wall = wallMs()
  local f = redis.call('HMGET', hashKey, 'clk', 'clkWall')
  local clk = advanceClock(tonumber(f[1] or ''), tonumber(f[2] or ''), wall, maxStep, vouched)
  redis.call('HSET', hashKey, 'clk', clk, 'clkWall', wall)
  return clk, wall
end
