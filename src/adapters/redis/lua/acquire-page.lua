-- A worker takes a page of a run. The page lease is the fencing token: only
-- its holder may claim or confirm recipients of the page. A lease left by a
-- worker that died (expired) is taken over; records in flight that no live
-- lease covers are settled by the provider's in-doubt policy first
-- (includes/ledger.lua settleInflight). A job of an older generation than
-- the page was last enqueued under is superseded: another job has the page.
-- KEYS: 1 run, 2 records, 3 lease, 4 leases, 5 errors, 6 bad, 7 campaign meta
-- ARGV: 1 page, 2 token, 3 lease ms, 4 in-doubt policy ('report' | 'resend'), 5 max attempts, 6 job generation,
--       7 event mask (recipients settled unknown are outbox events: includes/outbox.lua)
-- Returns {'ok', records, elapsed (ms since the run began: the records' time axis), recipientsVersion, unknownMarked, run number ('' : none), page size,
--        the run's start (ms), ms until its deadline ('' : none), its deliverAt ('' : none), its pace ('' : none),
--        the page's legs bytes ('' : every recipient on leg 0; includes/ledger.lua fallBack)}
--      | {'busy', ms until the lease ends} | {'inactive', runStatus, unknownMarked} | {'superseded'} | {'missing'}
-- @include ledger

local runStatus = redis.call('HGET', KEYS[1], 'status')
if not runStatus then return { 'missing' } end
local page, token = tonumber(ARGV[1]), ARGV[2]
local latest = tonumber(redis.call('HGET', KEYS[1], 'g:' .. ARGV[1]) or '0')
if latest > tonumber(ARGV[6]) then return { 'superseded' } end

local now, elapsed, wall = runClocks(KEYS[1])
local holder, expiry = readLease(KEYS[3])
local marked = 0
if holder ~= token then
  if holder and expiry > now then return { 'busy', expiry - now } end
  -- No live holder: whatever is in flight has nobody to confirm it.
  local ev = recipientEvents(ARGV[7])
  local _, sent
  marked, _, sent = settleInflight(KEYS[1], KEYS[2], KEYS[5], KEYS[6], page, elapsed, wall, ARGV[4], tonumber(ARGV[5]), ev)
  emitRecipients(KEYS[7], redis.call('HGET', KEYS[1], 'id'), wall, ev)
  if marked + sent > 0 then completeIfDone(KEYS[1], KEYS[7], wall) end
  runStatus = redis.call('HGET', KEYS[1], 'status')
end

if runStatus ~= 'running' then
  if holder then
    redis.call('DEL', KEYS[3])
    redis.call('ZREM', KEYS[4], ARGV[1])
  end
  return { 'inactive', runStatus, marked }
end

writeLease(KEYS[3], KEYS[4], ARGV[1], token, now + tonumber(ARGV[3]))
-- First touch of the page in this run: allocate its records at their final
-- size, so writes never grow (and over-allocate) the string.
if redis.call('EXISTS', KEYS[2]) == 0 then
  local layout = redis.call('HMGET', KEYS[1], 'pageSize', 'total')
  local size = math.min(tonumber(layout[1]), tonumber(layout[2]) - page * tonumber(layout[1]))
  if size > 0 then redis.call('SET', KEYS[2], string.rep('\0', size * RECORD)) end
end
local run = redis.call('HMGET', KEYS[1], 'rv', 'no', 'pageSize', 'startAt', 'createdAt', 'expiresAt', 'deliverAt', 'pace')
local deadline = tonumber(run[6] or '')
return { 'ok', redis.call('GET', KEYS[2]) or '', tostring(elapsed), run[1], marked, run[2] or '', run[3],
  run[4] or run[5], deadline and tostring(deadline - wall) or '', run[7] or '', run[8] or '', redis.call('GET', legsKeyOf(KEYS[2])) or '' }
