-- Pauses a campaign: a running run stops at every worker's next claim (in-flight
-- sends finish and are recorded); a scheduled campaign lets its occurrences pass.
-- KEYS: 1 campaign meta, 2 latest run hash (any key when there is none)
-- ARGV: 1 allowed states (csv), 2 latest run id as the caller read it
-- Returns {'ok', status} | {'state', status} | {'moved'} | {'missing'}
-- @include campaign
-- @include pace

local status = redis.call('HGET', KEYS[1], 'status')
if not status then return { 'missing' } end
if not allowed(status, ARGV[1]) then return { 'state', status } end
if not latestIs(KEYS[1], ARGV[2]) then return { 'moved' } end
local now = nowMs()
if status == 'running' then
  redis.call('HSET', KEYS[2], 'status', 'paused', 'pausedAt', now)
  pauseSpread(KEYS[2], now)
  emit(KEYS[1], 'run.paused', ARGV[2], now)
end
redis.call('HSET', KEYS[1], 'status', 'paused', 'pausedFrom', status, 'updatedAt', now)
return { 'ok', 'paused' }
