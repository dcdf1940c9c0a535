-- Supervisor: settles the pages of a run whose worker lease ran out (the
-- worker died or hangs) by the provider's in-doubt policy (see
-- settleInflight), completes the run when nothing of it is pending any more,
-- and — while the run is running — marks those pages for a new job of a new
-- generation at once (older jobs of theirs are superseded), so a dead
-- worker's pages go on within a lease period.
-- KEYS: 1 run, 2 leases, 3 errors, 4 bad, 5 campaign meta
-- ARGV: 1 in-doubt policy, 2 key prefix of the run's records (…:st:), 3 … of its leases (…:lease:), 4 max attempts,
--       5 event mask (recipients settled unknown are outbox events: includes/outbox.lua)
-- Returns {unknown, resent, 1 when this call completed the run, generation to enqueue them under (0: none), page, …}
-- @include ledger

local status = redis.call('HGET', KEYS[1], 'status')
if not status then return { 0, 0, 0, 0 } end
local now, elapsed, wall = runClocks(KEYS[1])
local pages = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
local unknown, resent = 0, 0
local ev = recipientEvents(ARGV[5])
for _, page in ipairs(pages) do
  local u, r = settleInflight(KEYS[1], ARGV[2] .. page, KEYS[3], KEYS[4], tonumber(page), elapsed, wall, ARGV[1], tonumber(ARGV[4]), ev)
  unknown, resent = unknown + u, resent + r
  redis.call('DEL', ARGV[3] .. page)
  redis.call('ZREM', KEYS[2], page)
end
emitRecipients(KEYS[5], redis.call('HGET', KEYS[1], 'id'), wall, ev)
local completed = completeIfDone(KEYS[1], KEYS[5], wall)
local out = { unknown, resent, completed, 0 }
if #pages > 0 and completed == 0 and redis.call('HGET', KEYS[1], 'status') == 'running' then
  local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
  out[4] = gen
  for _, page in ipairs(pages) do redis.call('HSET', KEYS[1], 'g:' .. page, gen) end
end
for _, page in ipairs(pages) do out[#out + 1] = tonumber(page) end
return out
