-- Creates a run of a campaign if the campaign is in one of the allowed states,
-- and moves the campaign to `running`. Atomic, so concurrent launches make
-- exactly one run.
-- KEYS: 1 campaign meta, 2 run hash, 3 runs zset
-- ARGV: 1 runId, 2 allowed campaign states (comma separated),
--       3 campaign status after the run completes, 4 trigger
-- @include ledger

local status = redis.call('HGET', KEYS[1], 'status')
if not status then return { 'missing' } end
if not string.find(',' .. ARGV[2] .. ',', ',' .. status .. ',', 1, true) then return { 'state', status } end
if redis.call('EXISTS', KEYS[2]) == 1 then return { 'exists', status } end
local layout = redis.call('HMGET', KEYS[1], 'total', 'pages', 'pageSize', 'priority', 'buckets', 'rv')
local PRIORITY_CLASS = { high = 0, normal = 1, low = 2 }
local total = tonumber(layout[1])
if total == 0 then return { 'empty', status } end

local now = nowMs()
redis.call('HSET', KEYS[2],
  'id', ARGV[1], 'status', 'running', 'trigger', ARGV[4], 'after', ARGV[3],
  'createdAt', now, 'activeAt', now,
  'total', total, 'pending', total, 'inflight', 0, 'sent', 0, 'failed', 0, 'unknown', 0, 'skipped', 0,
  'pages', layout[2], 'pageSize', layout[3], 'buckets', layout[5], 'rv', layout[6], 'cursor', 0, 'gen', 1,
  'priorityClass', PRIORITY_CLASS[layout[4] or 'normal'] or 1)
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'running', 'latestRun', ARGV[1], 'updatedAt', now)
return { 'ok', tostring(now) }
