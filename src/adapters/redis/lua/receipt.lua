-- A provider's receipt for one recipient of a run: `sent → delivered |
-- undelivered`, with its counts (`delivered` and `undelivered` are parts of
-- `sent`) and its outbox event, in one step. Idempotent: a receipt repeated,
-- or one that comes after `delivered`, changes nothing; `undelivered` then
-- `delivered` (a late success) moves to delivered.
-- A receipt says the provider had the message, whatever the ledger thought:
-- a recipient the ledger has as `unknown` is sent; one waiting to be tried
-- again (a timeout retried) is sent now and never tried again; one still in
-- flight (the receipt beat the worker's confirm) keeps the receipt for the
-- confirm to apply (confirm.lua).
-- KEYS: 1 run, 2 records of its page, 3 bad, 4 campaign meta
-- ARGV: 1 index in the page, 2 position in the run, 3 'd' delivered | 'x' undelivered, 4 when (epoch ms),
--       5 event mask, 6 the run number the receipt's key names
-- Returns {outcome} with outcome: applied | already | early | conflict (failed, skipped, never tried: not applied) | missing
-- @include ledger

local run = redis.call('HMGET', KEYS[1], 'status', 'no', 'id')
if not run[1] or run[2] ~= ARGV[6] then return { 'missing' } end
local index, position, status = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local state, attempts, reason = readRecord(KEYS[2], index)
if state == DELIVERED or (state == UNDELIVERED and status == 'x') then return { 'already' } end
if state == INFLIGHT then
  if redis.call('HSETNX', KEYS[1] .. ':early', position, status .. ':' .. ARGV[4]) == 1 then redis.call('HINCRBY', KEYS[1], 'early', 1) end
  return { 'early' }
end
local pending = state == PENDING and attempts > 0
if not (pending or state == SENT or state == UNDELIVERED or state == UNKNOWN) then return { 'conflict' } end
local _, elapsed, wall = runClocks(KEYS[1])
writeRecord(KEYS[2], index, status == 'd' and DELIVERED or UNDELIVERED, attempts, flagsOf(reason) + (reasonCode(reason) >= LOCALE and reasonCode(reason) or 0), elapsed)
if state == UNKNOWN then
  redis.call('HINCRBY', KEYS[1], 'unknown', -1)
  redis.call('HINCRBY', KEYS[1], 'sent', 1)
  redis.call('ZREM', KEYS[3], position)
elseif state == UNDELIVERED then
  redis.call('HINCRBY', KEYS[1], 'undelivered', -1)
elseif pending and run[1] == 'cancelled' then
  -- The cancel counted it already (its record stays pending): unknown when it was in doubt, else skipped.
  redis.call('HINCRBY', KEYS[1], 'sent', 1)
  if inDoubt(reason) then
    redis.call('HINCRBY', KEYS[1], 'unknown', -1)
    redis.call('ZREM', KEYS[3], position)
  else
    redis.call('HINCRBY', KEYS[1], 'skipped', -1)
    redis.call('HINCRBY', KEYS[1], 'skip:' .. CANCELLED, -1)
  end
elseif pending then
  redis.call('HINCRBY', KEYS[1], 'pending', -1)
  redis.call('HINCRBY', KEYS[1], 'sent', 1)
  if reasonCode(reason) == QUIET then redis.call('HINCRBY', KEYS[1], 'deferred', -1) end
  if inDoubt(reason) then noteDoubt(KEYS[1], position, false) end
end
redis.call('HINCRBY', KEYS[1], status == 'd' and 'delivered' or 'undelivered', 1)
local ev = recipientEvents(ARGV[5])
-- Sent now, for a recipient the ledger had pending or unknown (its earlier `recipient.unknown` stands as what was known then).
if pending or state == UNKNOWN then noteRecipient(ev, 's', position) end
noteRecipient(ev, status, position, ARGV[4])
emitRecipients(KEYS[4], run[3], wall, ev)
if pending then completeIfDone(KEYS[1], KEYS[4], wall) end
return { 'applied' }
