-- Claims recipients of a page for sending: pending (and due) → inflight, one
-- attempt spent. Only the lease holder may claim, and only while the run is
-- running, so a pause stops every worker at its next claim.
-- A record already in flight under this lease is returned as claimed again:
-- that is a claim whose reply was lost and that the client resent.
-- KEYS: 1 run, 2 records, 3 lease, 4 leases
-- ARGV: 1 page, 2 token, 3 lease ms, 4.. indexes within the page
-- Returns {'ok', index, attempts, index, attempts, …} | {'fenced'} | {'inactive', status}
-- @include ledger

local holder = readLease(KEYS[3])
if holder ~= ARGV[2] then return { 'fenced' } end
local run = redis.call('HMGET', KEYS[1], 'status', 'createdAt')
if run[1] ~= 'running' then return { 'inactive', run[1] or 'missing' } end

local now = nowMs()
local elapsed = now - tonumber(run[2])
local out = { 'ok' }
local claimed = 0
for i = 4, #ARGV do
  local index = tonumber(ARGV[i])
  local state, attempts, reason, at = readRecord(KEYS[2], index)
  if state == PENDING and at <= elapsed then
    attempts = math.min(attempts + 1, 255)
    writeRecord(KEYS[2], index, INFLIGHT, attempts, reason, elapsed)
    claimed = claimed + 1
    out[#out + 1] = index
    out[#out + 1] = attempts
  elseif state == INFLIGHT then
    out[#out + 1] = index
    out[#out + 1] = attempts
  end
end
if claimed > 0 then redis.call('HINCRBY', KEYS[1], 'inflight', claimed) end
writeLease(KEYS[3], KEYS[4], ARGV[1], ARGV[2], now + tonumber(ARGV[3]))
return out
