-- Undoes a set-schedule whose BullMQ scheduler could not be written (the API
-- answered 503, "nothing changed"): the schedule, the status it moved between
-- draft and scheduled, and the schedule version, as they were — only if the
-- schedule is still at the version that set-schedule made (nothing changed
-- it since).
-- KEYS: 1 campaign meta
-- ARGV: 1 version set-schedule answered, 2 schedule JSON before ('' none),
--       3 status before, 4 version before
-- Returns {'ok'} | {'moved'} | {'missing'}

local meta = redis.call('HMGET', KEYS[1], 'status', 'scheduleVersion')
if not meta[1] then return { 'missing' } end
if meta[2] ~= ARGV[1] then return { 'moved' } end
redis.call('HSET', KEYS[1], 'schedule', ARGV[2], 'scheduleVersion', ARGV[4])
local idle = meta[1] == 'draft' or meta[1] == 'scheduled'
if idle and (ARGV[3] == 'draft' or ARGV[3] == 'scheduled') then redis.call('HSET', KEYS[1], 'status', ARGV[3]) end
return { 'ok' }
