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

local function steadyMs(hashKey, maxStep, vouched)
  local wall = wallMs()
  local f = redis.call('HMGET', hashKey, 'clk', 'clkWall')
  local clk, last = tonumber(f[1] or ''), tonumber(f[2] or '')
  if clk and last then
    local step = wall - last
    if step < 0 then step = 0 end
    if step > maxStep then
      if vouched then step = math.max(0, math.min(step, vouched - clk)) else step = maxStep end
    end
    clk = clk + step
  else
    clk = wall
  end
  redis.call('HSET', hashKey, 'clk', clk, 'clkWall', wall)
  return clk, wall
end
