-- The next test send's number of a campaign, only while the campaign exists
-- and is not being deleted (so no stray hash is made for a gone one).
-- KEYS: 1 campaign meta
-- Returns n (1, 2, …) | -1 when the campaign is gone
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'deleting' then return -1 end
return redis.call('HINCRBY', KEYS[1], 'testSends', 1)
