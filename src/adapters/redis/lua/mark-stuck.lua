-- Marks a run stuck (no progress for STUCK_MS with recipients pending) or
-- clears the mark; the first mark writes `run.stuck` to the campaign's outbox
-- in the same step, so two supervisors marking it together write one event.
-- KEYS: 1 run hash, 2 campaign meta
-- ARGV: 1 '1' stuck | '0' not, 2 run id
-- Returns 1 when this call changed the mark
-- @include clock
-- @include outbox
if ARGV[1] ~= '1' then return redis.call('HDEL', KEYS[1], 'stuckSince') end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local now = wallMs()
if redis.call('HSETNX', KEYS[1], 'stuckSince', now) == 0 then return 0 end
local f = redis.call('HMGET', KEYS[1], 'pending', 'activeAt')
emit(KEYS[2], 'run.stuck', ARGV[2], now, 'pending', f[1] or '0', 'idleMs', now - tonumber(f[2] or now))
return 1
