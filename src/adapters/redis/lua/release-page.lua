-- A worker is done with a page for now: gives up its lease and reports what is
-- left. A page whose records are all final leaves the `unfinished` set; every
-- released page leaves `open`, making room in the run's fan-out window.
-- A page left with pending recipients none of which is due yet (quiet hours,
-- retry backoff) is `parked` until the earliest is: not a stalled page.
-- KEYS: 1 run, 2 records, 3 lease, 4 leases, 5 open, 6 unfinished, 7 parked
-- ARGV: 1 page, 2 token, 3 recipients in the page
-- Returns {pending, inflight, ms until the earliest pending one is due (0 when due now) or -1}
-- @include ledger

local holder = readLease(KEYS[3])
if holder == ARGV[2] then
  redis.call('DEL', KEYS[3])
  redis.call('ZREM', KEYS[4], ARGV[1])
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
  local now = nowMs()
  local dueAt = nextDue + tonumber(redis.call('HGET', KEYS[1], 'createdAt'))
  nextDue = math.max(0, dueAt - now)
  if nextDue > 0 and inflight == 0 then
    redis.call('ZADD', KEYS[7], dueAt, ARGV[1])
  else
    redis.call('ZREM', KEYS[7], ARGV[1])
  end
else
  redis.call('ZREM', KEYS[7], ARGV[1])
end
return { pending, inflight, nextDue }
