-- Holds every permit of a provider until a given delay has passed (the
-- provider answered 429): all workers on all machines slow down at once.
-- KEYS: 1 config hash
-- ARGV: 1 delay ms
-- Returns the server time until which the provider is paused.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untilMs = now + tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'pausedUntil') or '0')
if untilMs > current then
  redis.call('HSET', KEYS[1], 'pausedUntil', untilMs)
  return untilMs
end
return current
