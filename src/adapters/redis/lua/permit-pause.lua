-- The provider answered 429: every worker on every machine holds off until
-- the delay (Retry-After) has passed, and the paced rate is cut in half
-- (at most once a second, so one burst of 429s is one decrease); it climbs
-- back in permit-lease.lua as answers stay clean. Timed on the limiter's
-- steady clock, like everything in permit-lease.lua.
-- KEYS: 1 state hash
-- ARGV: 1 delay ms, 2 the steady time this caller can vouch for (includes/clock.lua), or -1
-- Returns the steady time until which the provider is paused.
-- @include clock

local vouched = tonumber(ARGV[2] or '-1')
local now = steadyMs(KEYS[1], 250, vouched >= 0 and vouched or nil)
local state = redis.call('HMGET', KEYS[1], 'rate', 'penaltyAt', 'pausedUntil')
local rate = tonumber(state[1] or '') or 1
if now - (tonumber(state[2] or '') or 0) >= 1000 then
  redis.call('HSET', KEYS[1], 'rate', math.max(0.05, rate * 0.5), 'rateAt', now, 'penaltyAt', now)
end
local untilMs = math.max(tonumber(state[3] or '') or 0, now + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'pausedUntil', untilMs)
return untilMs
