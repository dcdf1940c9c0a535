-- Records an occurrence of a campaign's schedule (the newest 100 kept); a
-- skipped one is a `schedule.skipped` event of the campaign's outbox, in the
-- same step.
-- KEYS: 1 occurrences list, 2 campaign meta
-- ARGV: 1 the entry (JSON), 2 '1' when skipped, 3 run id, 4 when (wall ms), 5 occurrence (ISO), 6 reason
-- @include outbox
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, 99)
if ARGV[2] == '1' then emit(KEYS[2], 'schedule.skipped', ARGV[3], ARGV[4], 'occurrence', ARGV[5], 'reason', ARGV[6]) end
return 1
