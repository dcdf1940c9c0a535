-- Records what became of recipients the lease holder claimed, and completes
-- the run when nothing is left pending. Refused whole when the caller no
-- longer holds the page lease (its in-flight recipients were settled by the
-- in-doubt policy when it lost the lease). The lease is renewed.
--
-- The holder's word lands: a record found pending with one attempt less
-- than the entry's is a claim that was lost after the send went out (a
-- failover to a replica that never got it), and is settled as if it had
-- been in flight — never left pending to be sent again. A record already
-- final, or pending with the entry's attempt (a confirm resent after a lost
-- reply), is left alone.
-- Channel fallback (includes/ledger.lua fallBack): the entries are of one
-- leg (ARGV 7); an entry for a recipient no longer on it (a confirm resent
-- after it moved on) is not applied. A recipient whose leg ends failed
-- (token invalid, no token) or unknown moves on to the next leg instead,
-- when the run's rules say so — never after an answer in doubt unless they
-- list unknown.
-- KEYS: 1 run, 2 records, 3 lease, 4 leases, 5 errors, 6 bad, 7 campaign meta
-- ARGV: 1 page, 2 token, 3 lease ms, 4 max attempts, 5 max requeues, 6 event mask, 7 leg,
--       8 the entries, packed (redis-ledger.ts packEntries): per recipient index (u32), attempt as
--       claimed (u8), op (a letter), delay ms (u32), error code (after its u16 length), error message (after its u32 length)
--   op: s sent | f failed for good (i: the token is dead, o: there is none) | t retry after delay (failed once the
--       attempts are spent) | q the same after an answer in doubt (the
--       record remembers: it can then only end sent or unknown, never
--       failed) | r requeue: the provider said not now, the
--       attempt does not count (failed after max requeues) | n unclaimed: it
--       never left this process (not counted anywhere) | u unknown
-- In a cancelled run, a recipient that would go back to pending is skipped (cancelled).
-- Final outcomes are recipient events of the campaign's outbox, by the mask
-- (includes/outbox.lua), written before the run's completion in this step;
-- one skipped by a cancel is counted by run.cancelled, not listed.
-- A provider's receipt that came before this confirm (receipt.lua) is applied
-- with it: a recipient it says was delivered (or not) is sent, whatever this
-- attempt's answer was (a timeout to retry, a failure, unknown).
-- Returns {'ok', runCompleted (0|1), applied} | {'fenced'}
-- @include ledger

local holder = readLease(KEYS[3])
if holder ~= ARGV[2] then return { 'fenced' } end

local now, elapsed, wall = runClocks(KEYS[1])
local run = redis.call('HMGET', KEYS[1], 'pageSize', 'status', 'id', 'early')
local pageSize = tonumber(run[1])
local cancelled = run[2] == 'cancelled'
local page = tonumber(ARGV[1])
local maxAttempts, maxRequeues = tonumber(ARGV[4]), tonumber(ARGV[5])
local d = { inflight = 0, pending = 0, sent = 0, failed = 0, unknown = 0, skipped = 0, deferred = 0, delivered = 0, undelivered = 0, early = 0 }
local anyEarly = tonumber(run[4] or '0') > 0
local applied, progressed = 0, false
local ev = recipientEvents(ARGV[6])
local rules = fallbackRules(KEYS[1])
local leg = tonumber(ARGV[7]) or 0
local budget = rules and leg > 0 and rules.max[leg + 1] or nil
-- Why a failure ends a leg, by op letter (anything else failed: f).
local FAILED_WHY = { i = 't', o = 'n' }
-- Outcomes that leave the recipient pending (again after a backoff, handed back unsent, never sent): t, r, n.
local function goesBack(op) return op == 't' or op == 'r' or op == 'n' end
local records = openRecords(KEYS[2])

local packed, offset = ARGV[8] or '', 1
while offset <= #packed do
  local index, attempt, op, delay, code, message
  index, attempt, op, delay, code, message, offset = struct.unpack('>I4Bc1I4Hc0I4c0', packed, offset)
  local why = FAILED_WHY[op] or 'f'
  if FAILED_WHY[op] then op = 'f' end
  local state, attempts, reason = readRecord(records, index)
  -- An entry of a leg the recipient has left applies to nothing.
  if rules and readLegs(records, index) % 4 ~= leg then state = -1 end
  local lost = state == PENDING and attempts == attempt - 1
  if lost then
    attempts = attempt
    -- As claim.lua would have: a deferred record claimed is no longer deferred.
    leaveDeferral(d, reason)
    -- The claim never made it into the counts either; a cancel counted the record skipped.
    if cancelled then
      d.skipped = d.skipped - 1
      d.pending = d.pending + 1
      redis.call('HINCRBY', KEYS[1], 'skip:' .. CANCELLED, -1)
    end
  elseif state == INFLIGHT then
    d.inflight = d.inflight - 1
  end
  if state == INFLIGHT or lost then
    applied = applied + 1
    if op ~= 'n' then progressed = true end
    local position = page * pageSize + index
    local flags = flagsOf(reason)
    -- The variant it was sent in stays on a final record (a lost claim's code is not one).
    local locale = reasonCode(reason) >= LOCALE and reasonCode(reason) or 0
    local requeues = 0
    if op == 'q' then
      if not inDoubt(flags) then flags = flags + IN_DOUBT end
      op = 't'
    end
    -- Attempts spent on answers that were not refusals (server errors, timeouts retried): failed, but one of those
    -- requests may have been taken, so such a failure never moves on to another channel.
    local exhausted = op == 't' and attempts >= maxAttempts
    if exhausted then op = 'f' end
    if op == 'r' then
      local last = redis.call('HGET', KEYS[5], position)
      requeues = (last and tonumber(cjson.decode(last).requeues or 0) or 0) + 1
      if requeues > maxRequeues then
        op = 'f'
        message = message .. ' (requeued ' .. (requeues - 1) .. ' times; giving up)'
      end
    end
    local settles = op == 'f' or (cancelled and goesBack(op))
    if settles and inDoubt(flags) then
      op = 'u'
      message = message .. ' (an earlier attempt may have been delivered)'
    end
    -- A receipt that came first: the provider had the message (every attempt carries the same key), whatever this
    -- attempt's answer said — sent, and never tried again.
    local early = anyEarly and redis.call('HGET', KEYS[1] .. ':early', position) or nil
    if early then
      redis.call('HDEL', KEYS[1] .. ':early', position)
      d.early = d.early - 1
      op = 's'
    end
    if (op == 'u' or (op == 'f' and not exhausted)) and not cancelled
      and fallBack(KEYS[1], records, KEYS[5], position, index, flags, op == 'u' and 'u' or why, elapsed, rules, d) then
      -- Ended on this leg for a reason the chain moves on from: pending on the next (no failure counted, nothing sent
      -- twice). Why it left is its legs byte; no error text is kept for it (a fifth of a list may move on).
    elseif cancelled and goesBack(op) then
      writeRecord(records, index, SKIPPED, attempts, CANCELLED, elapsed)
      redis.call('HINCRBY', KEYS[1], 'skip:' .. CANCELLED, 1)
      d.pending = d.pending - 1
      d.skipped = d.skipped + 1
    elseif op == 's' then
      local st = SENT
      if early then
        local kind = string.sub(early, 1, 1)
        st = kind == 'd' and DELIVERED or UNDELIVERED
        if kind == 'd' then d.delivered = d.delivered + 1 else d.undelivered = d.undelivered + 1 end
        noteRecipient(ev, kind, position, string.sub(early, 3))
      end
      writeRecord(records, index, st, attempts, flags + locale, elapsed)
      -- (The leg check above: a recipient with rules is on the entries' leg.)
      countLegSent(leg, rules, d)
      noteRecipient(ev, 's', position)
      d.pending = d.pending - 1
      d.sent = d.sent + 1
    elseif op == 'f' or op == 'u' then
      writeRecord(records, index, op == 'f' and FAILED or UNKNOWN, attempts, flags + locale, elapsed)
      recordError(KEYS[5], position, code, message, attempts, wall, requeues)
      redis.call('ZADD', KEYS[6], position, position)
      noteRecipient(ev, op, position)
      d.pending = d.pending - 1
      if op == 'f' then d.failed = d.failed + 1 else d.unknown = d.unknown + 1 end
    else
      if op == 'r' or op == 'n' then attempts = attempts - 1 end
      writeRecord(records, index, PENDING, attempts, flags, elapsed + delay)
      if op ~= 'n' and code ~= '' then recordError(KEYS[5], position, code, message, attempts, wall, requeues) end
      if inDoubt(flags) then noteDoubt(KEYS[1], position, true) end
    end
    -- A leg's message budget counts a recipient's first claim on it (claim.lua). Handed back unsent, or refused
    -- before any request (no address), it gets that back; a claim lost in a failover never counted, so its
    -- confirm counts a message that went out instead.
    if budget and attempt == 1 then
      local unsent = goesBack(op) and op ~= 't' or why == 'n'
      local delta = lost and (unsent and 0 or 1) or (unsent and -1 or 0)
      if delta ~= 0 then d['leg:' .. leg .. ':msgs'] = (d['leg:' .. leg .. ':msgs'] or 0) + delta end
    end
    -- A lost claim found the record pending in doubt; it is not pending any more unless it went back.
    if lost and inDoubt(reason) and not goesBack(op) then noteDoubt(KEYS[1], position, false) end
  end
end

flushRecords(records)
for field, delta in pairs(d) do
  if delta ~= 0 then redis.call('HINCRBY', KEYS[1], field, delta) end
end
-- Recipients handed back unsent are not progress: a run that only does that is stuck.
if progressed then redis.call('HSET', KEYS[1], 'activeAt', wall) end
writeLease(KEYS[3], KEYS[4], ARGV[1], ARGV[2], now + tonumber(ARGV[3]))
emitRecipients(KEYS[7], run[3], wall, ev)
return { 'ok', completeIfDone(KEYS[1], KEYS[7], wall), applied }
