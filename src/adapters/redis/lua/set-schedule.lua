-- Sets or clears a campaign's schedule and bumps its schedule version, so an
-- occurrence of an older schedule knows it is stale. A cron campaign may be
-- rescheduled (to another cron) while one of its runs is sending or paused;
-- the run in progress is untouched.
-- KEYS: 1 campaign meta
-- ARGV: 1 allowed states (csv), 2 spec JSON ('' clears), 3 kind ('at' | 'cron' | ''),
--       4 expected schedule version when clearing (0: any)
-- Returns {'ok', status, version, schedule before, status before} | {'state', status, why} | {'missing'}
-- @include campaign

local meta = redis.call('HMGET', KEYS[1], 'status', 'schedule', 'pausedFrom', 'scheduleVersion')
local status = meta[1]
if not status then return { 'missing' } end
local before = { meta[2] or '', status }
if not allowed(status, ARGV[1]) then return { 'state', status, '' } end

local now = nowMs()
if ARGV[2] == '' then
  if ARGV[4] ~= '0' and meta[4] ~= ARGV[4] then return { 'state', status, 'the schedule changed meanwhile' } end
  local version = redis.call('HINCRBY', KEYS[1], 'scheduleVersion', 1)
  redis.call('HSET', KEYS[1], 'schedule', '', 'updatedAt', now)
  if status == 'scheduled' then redis.call('HSET', KEYS[1], 'status', 'draft'); status = 'draft' end
  return { 'ok', status, version, before[1], before[2] }
end

local sending = status == 'running' or (status == 'paused' and meta[3] == 'running')
if sending then
  local current = meta[2] or ''
  if ARGV[3] ~= 'cron' or current == '' or cjson.decode(current).kind ~= 'cron' then
    return { 'state', status, 'Only a recurring (cron) campaign can be rescheduled, to another cron, while a run is in progress.' }
  end
end
local version = redis.call('HINCRBY', KEYS[1], 'scheduleVersion', 1)
redis.call('HSET', KEYS[1], 'schedule', ARGV[2], 'updatedAt', now)
if status == 'draft' then redis.call('HSET', KEYS[1], 'status', 'scheduled'); status = 'scheduled' end
return { 'ok', status, version, before[1], before[2] }
