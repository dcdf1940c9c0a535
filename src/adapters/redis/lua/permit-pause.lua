-- The provider answered 429: every worker on every machine holds off until
-- the delay (Retry-After) has passed, and the paced rate is cut in half
-- (at most once a second, so one burst of 429s is one decrease); it climbs
-- back in permit-lease.lua as answers stay clean.
-- KEYS: 1 state hash
-- ARGV: 1 delay ms
-- Returns the server time until which the provider is paused.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'rate', 'penaltyAt', 'pausedUntil')
local rate = tonumber(state[1] or '') or 1
if now - (tonumber(state[2] or '') or 0) >= 1000 then
  redis.call('HSET', KEYS[1], 'rate', math.max(0.05, rate * 0.5), 'rateAt', now, 'penaltyAt', now)
end
local untilMs = math.max(tonumber(state[3] or '') or 0, now + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'pausedUntil', untilMs)
return untilMs
