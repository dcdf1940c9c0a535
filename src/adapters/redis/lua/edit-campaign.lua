-- Changes fields of a campaign (name, message, priority) in one step, only in
-- the states where that is allowed.
-- KEYS: 1 campaign meta
-- ARGV: 1 allowed states (csv), then field/value pairs
-- Returns {'ok', status} | {'state', status} | {'missing'}
-- @include campaign

local status = redis.call('HGET', KEYS[1], 'status')
if not status then return { 'missing' } end
if not allowed(status, ARGV[1]) then return { 'state', status } end
local fields = { 'updatedAt', nowMs() }
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
return { 'ok', status }
