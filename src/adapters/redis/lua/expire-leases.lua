-- Supervisor: settles the pages of a run whose worker lease ran out (the
-- worker died or hangs), as a taking-over worker would (see expireInflight),
-- and completes the run when nothing of it is pending any more.
-- KEYS: 1 run, 2 leases, 3 errors, 4 bad, 5 campaign meta
-- ARGV: 1 in-doubt policy, 2 key prefix of the run's records (…:st:), 3 … of its leases (…:lease:)
-- Returns {pages expired, recipients settled, 1 when this call completed the run}
-- @include ledger

local now = nowMs()
local pages = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
local settled = 0
for _, page in ipairs(pages) do
  settled = settled + expireInflight(KEYS[1], ARGV[2] .. page, KEYS[3], KEYS[4], tonumber(page), now, ARGV[1])
  redis.call('DEL', ARGV[3] .. page)
  redis.call('ZREM', KEYS[2], page)
end
return { #pages, settled, completeIfDone(KEYS[1], KEYS[5], now) }
