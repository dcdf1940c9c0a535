-- The next value of one of a campaign's counters (rvSeq: list versions;
-- testSends: test-send runs), only while the campaign exists and is not being
-- deleted, so nothing recreates a stray hash for a campaign that is gone.
-- KEYS: 1 campaign meta
-- ARGV: 1 counter field
-- Returns n (1, 2, …) | -1 when the campaign is gone
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'deleting' then return -1 end
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
