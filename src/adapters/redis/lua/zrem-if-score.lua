-- Removes a member of a sorted set only if its score is still the one the caller read.
-- KEYS: 1 the zset
-- ARGV: 1 member, 2 score as read
-- Returns 1 when removed
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
