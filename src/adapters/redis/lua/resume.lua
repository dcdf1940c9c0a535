-- Resumes a paused campaign. A paused run goes on where it stopped: its
-- unfinished pages are returned to be enqueued again under a new generation.
-- KEYS: 1 campaign meta, 2 latest run hash, 3 run's unfinished set, 4 run's open set
-- ARGV: 1 latest run id as the caller read it, 2 status for a campaign paused between runs
-- Returns {'ok', status, gen, page, …} | {'ok', status} | {'state', status} | {'moved'} | {'missing'}
-- @include campaign
-- @include pace

local meta = redis.call('HMGET', KEYS[1], 'status', 'pausedFrom')
if not meta[1] then return { 'missing' } end
if meta[1] ~= 'paused' then return { 'state', meta[1] } end
if not latestIs(KEYS[1], ARGV[1]) then return { 'moved' } end
local now = nowMs()
if meta[2] ~= 'running' then
  redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updatedAt', now)
  redis.call('HDEL', KEYS[1], 'pausedFrom')
  return { 'ok', ARGV[2] }
end
redis.call('HSET', KEYS[2], 'status', 'running', 'activeAt', now)
resumeSpread(KEYS[2], now)
emit(KEYS[1], 'run.resumed', ARGV[1], now)
local gen = redis.call('HINCRBY', KEYS[2], 'gen', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'updatedAt', now)
redis.call('HDEL', KEYS[1], 'pausedFrom')
local out = { 'ok', 'running', gen }
for _, page in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  redis.call('SADD', KEYS[4], page)
  out[#out + 1] = tonumber(page)
end
return out
