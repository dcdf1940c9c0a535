-- Marks a campaign `deleting`: from this step on no launch, schedule, upload
-- or edit can touch it (their scripts refuse a state they do not start
-- from), and the API answers as if it were gone; a worker then removes its
-- keys in bounded steps. Refused while a run sends (running, paused) or a
-- cancelled run still has requests in flight.
-- KEYS: 1 campaign meta, 2 latest run hash (any key when there is none)
-- ARGV: 1 allowed states (csv), 2 latest run id as the caller read it, 3 '1' to purge the archive too
-- Returns {'ok', runs} | {'state', status, why?} | {'moved'} | {'missing'}
-- @include campaign

local status = redis.call('HGET', KEYS[1], 'status')
if not status then return { 'missing' } end
if status == 'deleting' then return { 'ok', 'deleting' } end
if not allowed(status, ARGV[1]) then return { 'state', status } end
if not latestIs(KEYS[1], ARGV[2]) then return { 'moved' } end
if ARGV[2] ~= '' then
  local run = redis.call('HMGET', KEYS[2], 'status', 'inflight')
  if run[1] == 'running' or run[1] == 'paused' then return { 'state', status } end
  if tonumber(run[2] or '0') > 0 then
    return { 'state', status, 'Its cancelled run still has requests in flight; delete it once they are recorded (seconds).' }
  end
end
redis.call('HSET', KEYS[1], 'status', 'deleting', 'deletingFrom', status, 'purgeArchive', ARGV[3], 'updatedAt', nowMs())
return { 'ok', 'deleting' }
