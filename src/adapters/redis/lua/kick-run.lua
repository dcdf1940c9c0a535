-- The supervisor's remedy for a running run that made no progress for a
-- while (its page jobs were lost, or every worker that had them died):
-- bumps the enqueue generation and returns the unfinished pages nobody holds
-- a live lease on, to be enqueued again under fresh job ids. At most once per
-- stall period per run, however many supervisors run. A page parked until
-- its recipients are due (quiet hours, backoff) is not stalled before then
-- (plus a stall period, for its delayed job to run); a run whose unfinished
-- pages are all parked is waiting, not stuck.
-- KEYS: 1 run, 2 unfinished, 3 open, 4 leases, 5 parked
-- ARGV: 1 stall ms
-- Returns {'kicked', gen, page, …} | {'fresh'} | {'parked', ms until the earliest wakes} | {'inactive', status}
-- @include ledger

local run = redis.call('HMGET', KEYS[1], 'status', 'activeAt', 'kickedAt')
if run[1] ~= 'running' then return { 'inactive', run[1] or 'missing' } end
local leaseNow, _, now = runClocks(KEYS[1])
local stall = tonumber(ARGV[1])
if now - tonumber(run[2] or '0') < stall then return { 'fresh' } end

local live, sleeping = {}, {}
for _, page in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], leaseNow, '+inf')) do live[page] = true end
for _, page in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], now - stall, '+inf')) do sleeping[page] = true end
local stalled, anyLive, anyParked = {}, false, false
for _, page in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if live[page] then
    anyLive = true
  elseif sleeping[page] then
    anyParked = true
  else
    stalled[#stalled + 1] = page
  end
end
if anyParked and #stalled == 0 and not anyLive then
  local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  return { 'parked', first[2] and math.max(0, tonumber(first[2]) - now) or 0 }
end
if #stalled == 0 or now - tonumber(run[3] or '0') < stall then return { 'fresh' } end
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'kickedAt', now)
local out = { 'kicked', gen }
for _, page in ipairs(stalled) do
  redis.call('SADD', KEYS[3], page)
  out[#out + 1] = tonumber(page)
end
return out
