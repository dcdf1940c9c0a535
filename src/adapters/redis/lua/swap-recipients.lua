-- Makes a staged version of the recipient list current, in one step, only in
-- the states where the list may change. The old version is to be dropped
-- unless the latest run still reads it.
-- KEYS: 1 campaign meta, 2 latest run hash (any key when there is none)
-- ARGV: 1 allowed states (csv), 2 latest run id as the caller read it,
--       3 version, 4 total, 5 pages, 6 page size, 7 buckets,
--       then field/value pairs of the campaign changed in the same step (an edit)
-- Returns {'ok', status, versionToDrop or 0} | {'state', status} | {'moved'} | {'missing'}
-- @include campaign

local status = redis.call('HGET', KEYS[1], 'status')
if not status then return { 'missing' } end
if not allowed(status, ARGV[1]) then return { 'state', status } end
if not latestIs(KEYS[1], ARGV[2]) then return { 'moved' } end
local old = redis.call('HGET', KEYS[1], 'rv')
local fields = { 'rv', ARGV[3], 'total', ARGV[4], 'pages', ARGV[5], 'pageSize', ARGV[6], 'buckets', ARGV[7], 'updatedAt', nowMs() }
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
local drop = old
if ARGV[2] ~= '' and redis.call('HGET', KEYS[2], 'rv') == old then drop = 0 end
return { 'ok', status, drop }
