-- A worker is done with a page for now: gives up its lease and reports what is
-- left. Records still in flight at that point have nobody to confirm them (a
-- confirm lost on the way): they are settled by the in-doubt policy at once.
-- A page whose records are all final leaves the `unfinished` set; every
-- released page leaves `open`, making room in the run's fan-out window.
-- A page left with pending recipients none of which is due yet (quiet hours,
-- retry backoff) is `parked` until the earliest is: not a stalled page.
-- KEYS: 1 run, 2 records, 3 lease, 4 leases, 5 open, 6 unfinished, 7 parked, 8 errors, 9 bad, 10 campaign meta
-- ARGV: 1 page, 2 token, 3 recipients in the page, 4 in-doubt policy, 5 max attempts,
--       6 event mask (recipients settled unknown are outbox events: includes/outbox.lua)
-- Returns {pending, inflight, ms until the earliest pending one is due (0 when due now) or -1, unknownMarked}
-- @include ledger

local holder = readLease(KEYS[3])
local ours = holder == ARGV[2] or not holder
if holder == ARGV[2] then
  redis.call('DEL', KEYS[3])
  redis.call('ZREM', KEYS[4], ARGV[1])
end
local marked, elapsed, wall = 0, 0, wallMs()
if redis.call('EXISTS', KEYS[1]) == 1 then
  local _
  _, elapsed, wall = runClocks(KEYS[1])
  if ours then
    local ev = recipientEvents(ARGV[6])
    local sent
    marked, _, sent = settleInflight(KEYS[1], KEYS[2], KEYS[8], KEYS[9], tonumber(ARGV[1]), elapsed, wall, ARGV[4], tonumber(ARGV[5]), ev)
    emitRecipients(KEYS[10], redis.call('HGET', KEYS[1], 'id'), wall, ev)
    if marked + sent > 0 then completeIfDone(KEYS[1], KEYS[10], wall) end
  end
end

local raw = redis.call('GET', KEYS[2]) or ''
local size = tonumber(ARGV[3])
local written = math.floor(#raw / RECORD)
local pending, inflight, nextDue = 0, 0, -1
for index = 0, size - 1 do
  if index >= written then
    pending = pending + 1
    nextDue = 0
  else
    local state, _, _, at = struct.unpack('>BBHI6', raw, index * RECORD + 1)
    if state == PENDING then
      pending = pending + 1
      if nextDue < 0 or at < nextDue then nextDue = at end
    elseif state == INFLIGHT then
      inflight = inflight + 1
    end
  end
end

redis.call('SREM', KEYS[5], ARGV[1])
if pending == 0 and inflight == 0 then redis.call('SREM', KEYS[6], ARGV[1]) end
if nextDue >= 0 then
  nextDue = math.max(0, nextDue - elapsed)
  if nextDue > 0 and inflight == 0 then
    redis.call('ZADD', KEYS[7], wall + nextDue, ARGV[1])
  else
    redis.call('ZREM', KEYS[7], ARGV[1])
  end
else
  redis.call('ZREM', KEYS[7], ARGV[1])
end
return { pending, inflight, nextDue, marked }
