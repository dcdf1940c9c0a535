-- The supervisor's remedy for a running run that made no progress for a
-- while (its page jobs were lost, or every worker that had them died):
-- bumps the enqueue generation and returns the unfinished pages nobody holds
-- a live lease on, to be enqueued again under fresh job ids. At most once per
-- stall period per run, however many supervisors run.
-- KEYS: 1 run, 2 unfinished, 3 open, 4 leases
-- ARGV: 1 stall ms
-- Returns {'kicked', gen, page, …} | {'fresh'} | {'inactive', status}
-- @include ledger

local now = nowMs()
local run = redis.call('HMGET', KEYS[1], 'status', 'activeAt', 'kickedAt')
if run[1] ~= 'running' then return { 'inactive', run[1] or 'missing' } end
local stall = tonumber(ARGV[1])
if now - tonumber(run[2] or '0') < stall or now - tonumber(run[3] or '0') < stall then return { 'fresh' } end

local live = {}
for _, page in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], now, '+inf')) do live[page] = true end
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'kickedAt', now)
local out = { 'kicked', gen }
for _, page in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not live[page] then
    redis.call('SADD', KEYS[3], page)
    out[#out + 1] = tonumber(page)
  end
end
return out
