-- Changes a campaign's pace, in any state; its run, if it is sending or
-- paused, takes it at once (the workers read a run's pace every second).
-- KEYS: 1 campaign meta, 2 latest run hash (any key when there is none)
-- ARGV: 1 allowed states (csv), 2 latest run id as the caller read it, 3 tps ('' : none), 4 spread ms ('' : none)
-- Returns {'ok', status} | {'state', status} | {'moved'} | {'missing'}
-- @include campaign
-- @include pace

local status = redis.call('HGET', KEYS[1], 'status')
if not status then return { 'missing' } end
if not allowed(status, ARGV[1]) then return { 'state', status } end
if not latestIs(KEYS[1], ARGV[2]) then return { 'moved' } end
local now = nowMs()
redis.call('HSET', KEYS[1], 'paceTps', ARGV[3], 'paceSpreadMs', ARGV[4], 'updatedAt', now)
if ARGV[2] ~= '' then
  local runStatus = redis.call('HGET', KEYS[2], 'status')
  if runStatus == 'running' or runStatus == 'paused' then setRunPace(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), now) end
end
return { 'ok', status }
