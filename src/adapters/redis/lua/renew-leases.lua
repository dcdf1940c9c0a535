-- Renews the page leases one worker process holds on pages of one run, in
-- one call (its lease renewer's tick). A lease another holder took over is
-- not renewed: its page is fenced for this process.
-- KEYS: 1 run, 2 leases, 3.. the lease of each page, in the order of ARGV's pairs
-- ARGV: 1 lease ms, then (page, token) per lease
-- Returns {run status or 'missing', then per lease 1 renewed | 0 fenced}
-- @include ledger

local status = redis.call('HGET', KEYS[1], 'status')
if not status then return { 'missing' } end
local now = runClocks(KEYS[1])
local expiry = now + tonumber(ARGV[1])
local out = { status }
for i = 2, #ARGV, 2 do
  local leaseKey = KEYS[2 + i / 2]
  if readLease(leaseKey) == ARGV[i + 1] then
    writeLease(leaseKey, KEYS[2], ARGV[i], ARGV[i + 1], expiry)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
