-- A finished run now reads from the archive: its summary stays (counts,
-- times, what was archived where), its ledger may go. Only a run that can
-- no longer change qualifies: completed, or cancelled with nothing in
-- flight. `dropList`: the campaign's recipient list leaves Redis too (a
-- one-off campaign's last run), so nothing reads it any more.
-- KEYS: 1 run hash, 2 campaign meta
-- ARGV: 1 archive kind, 2 row count, 3 '1' to drop the list (the SHA-256 is the archive manifest's, not kept here)
-- Returns 1 when the run is marked (now or before), 0 when it does not qualify.
-- @include campaign

local run = redis.call('HMGET', KEYS[1], 'status', 'inflight', 'archived')
if not run[1] then return 0 end
if run[3] then return 1 end
if (run[1] ~= 'completed' and run[1] ~= 'cancelled') or tonumber(run[2]) ~= 0 then return 0 end
redis.call('HSET', KEYS[1], 'archived', ARGV[1], 'archiveCount', ARGV[2], 'archivedAt', nowMs())
-- What only a sending run needs (fan-out cursor, lease clocks, deferrals): the summary keeps counts, times and layout.
redis.call('HDEL', KEYS[1], 'after', 'cursor', 'gen', 'clk', 'clkWall', 'clkStep', 'due', 'dueWall', 'kickedAt', 'deferred', 'defer:7', 'deferredUntil', 'spreadEnd', 'spreadLeft', 'stuckSince', 'pausedAt', 'priorityClass')
if ARGV[3] == '1' then redis.call('HSET', KEYS[2], 'listArchived', '1') end
return 1
