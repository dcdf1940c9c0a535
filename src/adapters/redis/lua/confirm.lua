-- Records what the provider said for recipients in flight, and completes the
-- run when nothing is left pending. Refused whole when the caller no longer
-- holds the page lease (its in-flight recipients were already marked unknown).
-- KEYS: 1 run, 2 records, 3 lease, 4 leases, 5 errors, 6 bad, 7 campaign meta
-- ARGV: 1 page, 2 token, 3 lease ms, 4 max attempts,
--       then per recipient 5 values: index, op, delay ms, error code, error message
--   op: s sent | f failed for good | t transient: retry after delay, or failed
--       once max attempts are spent | r requeue: the attempt does not count
--       (rate limited, or never left the worker) | u unknown
-- Returns {'ok', runCompleted (0|1), applied} | {'fenced'}
-- @include ledger

local holder = readLease(KEYS[3])
if holder ~= ARGV[2] then return { 'fenced' } end

local now = nowMs()
local epoch = tonumber(redis.call('HGET', KEYS[1], 'createdAt'))
local pageSize = tonumber(redis.call('HGET', KEYS[1], 'pageSize'))
local elapsed = now - epoch
local page = tonumber(ARGV[1])
local maxAttempts = tonumber(ARGV[4])
local sent, failed, unknown, settled, applied = 0, 0, 0, 0, 0

for i = 5, #ARGV, 5 do
  local index, op, delay = tonumber(ARGV[i]), ARGV[i + 1], tonumber(ARGV[i + 2])
  local code, message = ARGV[i + 3], ARGV[i + 4]
  local state, attempts, reason = readRecord(KEYS[2], index)
  if state == INFLIGHT then
    applied = applied + 1
    local position = page * pageSize + index
    if op == 't' and attempts >= maxAttempts then op = 'f' end
    if op == 's' then
      writeRecord(KEYS[2], index, SENT, attempts, reason, elapsed)
      sent = sent + 1
      settled = settled + 1
    elseif op == 'f' or op == 'u' then
      writeRecord(KEYS[2], index, op == 'f' and FAILED or UNKNOWN, attempts, reason, elapsed)
      recordError(KEYS[5], position, code, message, attempts, now)
      redis.call('ZADD', KEYS[6], position, position)
      if op == 'f' then failed = failed + 1 else unknown = unknown + 1 end
      settled = settled + 1
    else
      if op == 'r' then attempts = attempts - 1 end
      writeRecord(KEYS[2], index, PENDING, attempts, reason, elapsed + delay)
      if code ~= '' then recordError(KEYS[5], position, code, message, attempts, now) end
    end
  end
end

if applied > 0 then
  redis.call('HINCRBY', KEYS[1], 'inflight', -applied)
  if settled > 0 then redis.call('HINCRBY', KEYS[1], 'pending', -settled) end
  if sent > 0 then redis.call('HINCRBY', KEYS[1], 'sent', sent) end
  if failed > 0 then redis.call('HINCRBY', KEYS[1], 'failed', failed) end
  if unknown > 0 then redis.call('HINCRBY', KEYS[1], 'unknown', unknown) end
  redis.call('HSET', KEYS[1], 'activeAt', now)
end
writeLease(KEYS[3], KEYS[4], ARGV[1], ARGV[2], now + tonumber(ARGV[3]))
return { 'ok', completeIfDone(KEYS[1], KEYS[7], now), applied }
