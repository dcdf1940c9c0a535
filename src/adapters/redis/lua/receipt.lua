-- Providers' receipts for recipients of one run: each `sent → delivered |
-- undelivered`, with its counts (`delivered` and `undelivered` are parts of
-- `sent`), and their outbox events (one entry for the batch), in one step.
-- Idempotent: a receipt repeated, or one that comes after `delivered`,
-- changes nothing; `undelivered` then `delivered` (a late success) moves to
-- delivered. Receipts for one recipient are applied in the order given.
-- A receipt says the provider had the message, whatever the ledger thought:
-- a recipient the ledger has as `unknown` is sent; one waiting to be tried
-- again (a timeout retried) is sent now and never tried again; one still in
-- flight (the receipt beat the worker's confirm) keeps the receipt for the
-- confirm, or whatever settles it, to apply (confirm.lua, settleInflight).
-- Channel fallback (includes/ledger.lua fallBack): a receipt is about the
-- leg whose provider sent it; one about a leg the recipient is not on is a
-- conflict. A receipt saying the provider re-sent the message by SMS itself
-- (nativeFallback) moves the recipient to leg 1 (it left leg 0 failed), in
-- the step that applies it. A `delivered` about a leg the recipient left
-- unknown (onUnknown), while it waits untried on the next, settles it sent
-- on that leg: the next channel is never tried.
-- KEYS: 1 run, 2 bad, 3 campaign meta, then the records of each receipt's page
-- ARGV: 1 event mask, 2 the run number the receipts' keys name,
--       then per receipt 6 values: index in its page, position in the run, 'd' delivered | 'x' undelivered, when (epoch ms),
--       the leg it is about, '1' when its provider re-sent it by SMS
-- Returns one outcome per receipt: applied | already | early | conflict (failed, skipped, never tried: not applied) | missing
-- @include ledger

local out = {}
local run = redis.call('HMGET', KEYS[1], 'status', 'no', 'id', 'archived')
-- A run marked archived is what the archive holds: its ledger is leaving Redis.
if not run[1] or run[2] ~= ARGV[2] or run[4] then
  for i = 3, #ARGV, 6 do out[#out + 1] = 'missing' end
  return out
end
local cancelled = run[1] == 'cancelled'
local _, elapsed, wall = runClocks(KEYS[1])
local ev = recipientEvents(ARGV[1])
local d = { sent = 0, pending = 0, unknown = 0, skipped = 0, cancelSkips = 0, deferred = 0, delivered = 0, undelivered = 0, early = 0 }
local completes = false
local rules = fallbackRules(KEYS[1])
for i = 3, #ARGV, 6 do
  local records = KEYS[4 + (i - 3) / 6]
  local index, position, status, at = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  local leg, resent = tonumber(ARGV[i + 4]) or 0, ARGV[i + 5] == '1'
  local state, attempts, reason = readRecord(records, index)
  local pending = state == PENDING and attempts > 0
  local legs = (rules or leg > 0) and readLegs(records, index) or 0
  local onLeg = legs % 4
  if onLeg > leg and status == 'd' and state == PENDING and attempts == 0 then
    -- It left this leg unknown (onUnknown) and waits for the next, untried: the provider says it was delivered
    -- after all — sent on this leg, and no other channel is tried.
    local kept = (legs - onLeg) % (4 ^ (leg + 1))
    redis.call('SETRANGE', legsKeyOf(records), index, string.char(kept + leg))
    for k = leg, onLeg - 1 do
      d['leg:' .. k .. ':out'] = (d['leg:' .. k .. ':out'] or 0) - 1
      d['leg:' .. (k + 1) .. ':in'] = (d['leg:' .. (k + 1) .. ':in'] or 0) - 1
    end
    writeRecord(records, index, DELIVERED, 1, flagsOf(reason), elapsed)
    leaveDeferral(d, reason)
    d.sent = d.sent + 1
    d.pending = d.pending - 1
    d.delivered = d.delivered + 1
    noteRecipient(ev, 's', position)
    noteRecipient(ev, status, position, at)
    completes = true
    out[#out + 1] = 'applied'
  elseif onLeg ~= leg and not (resent and onLeg == 1 and leg == 0) then
    -- About a leg it has left (or not reached): that provider's word is not about this message.
    out[#out + 1] = 'conflict'
  elseif state == DELIVERED or (state == UNDELIVERED and status == 'x') then
    out[#out + 1] = 'already'
  elseif state == INFLIGHT then
    -- Kept for the confirm; delivered wins over undelivered, whichever came first.
    local held = redis.call('HGET', KEYS[1] .. ':early', position)
    if not held then d.early = d.early + 1 end
    if not held or (status == 'd' and string.sub(held, 1, 1) == 'x') then redis.call('HSET', KEYS[1] .. ':early', position, status .. ':' .. at) end
    out[#out + 1] = 'early'
  elseif not (pending or state == SENT or state == UNDELIVERED or state == UNKNOWN) then
    out[#out + 1] = 'conflict'
  else
    local code = reasonCode(reason)
    writeRecord(records, index, status == 'd' and DELIVERED or UNDELIVERED, attempts, flagsOf(reason) + (code >= LOCALE and code or 0), elapsed)
    if state == UNDELIVERED then
      d.undelivered = d.undelivered - 1
    elseif state ~= SENT then
      -- Sent now: from unknown, from waiting for a retry, or — a cancelled run counted its pending ones
      -- already (their records stay pending) — from unknown (in doubt) or skipped.
      d.sent = d.sent + 1
      if state == UNKNOWN then
        d.unknown = d.unknown - 1
        redis.call('ZREM', KEYS[2], position)
      elseif pending and cancelled and inDoubt(reason) then
        d.unknown = d.unknown - 1
        redis.call('ZREM', KEYS[2], position)
      elseif pending and cancelled then
        d.skipped = d.skipped - 1
        d.cancelSkips = d.cancelSkips - 1
      elseif pending then
        d.pending = d.pending - 1
        leaveDeferral(d, reason)
        if inDoubt(reason) then noteDoubt(KEYS[1], position, false) end
        completes = true
      end
      -- Its earlier `recipient.unknown`, if any, stands as what was known then.
      noteRecipient(ev, 's', position)
    end
    if status == 'd' then d.delivered = d.delivered + 1 else d.undelivered = d.undelivered + 1 end
    noteRecipient(ev, status, position, at)
    if resent and rules and onLeg == 0 then
      -- Re-sent by SMS by the provider itself: it left leg 0 (failed), and was sent on leg 1.
      redis.call('SETRANGE', legsKeyOf(records), index, string.char(1 + LEFT_CODE.f * 4))
      d['leg:0:out'] = (d['leg:0:out'] or 0) + 1
      d['leg:1:in'] = (d['leg:1:in'] or 0) + 1
      d['leg:1:sent'] = (d['leg:1:sent'] or 0) + 1
    end
    out[#out + 1] = 'applied'
  end
end
for field, delta in pairs(d) do
  if delta ~= 0 then redis.call('HINCRBY', KEYS[1], field == 'cancelSkips' and 'skip:' .. CANCELLED or field, delta) end
end
emitRecipients(KEYS[3], run[3], wall, ev)
if completes then completeIfDone(KEYS[1], KEYS[3], wall) end
return out
