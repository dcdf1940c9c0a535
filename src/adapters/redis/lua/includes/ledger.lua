-- Shared by the ledger scripts. Layout of a record: see src/domain/ledger.ts.
local RECORD = 10
local PENDING, INFLIGHT, SENT, FAILED, UNKNOWN, SKIPPED = 0, 1, 2, 3, 4, 5
-- The reason field: a code (REASONS of src/domain/respect.ts) in the low 15
-- bits; the top bit says the recipient was counted against a frequency cap in
-- this run (kept through retries, so it is never counted twice).
local COUNTED = 32768
local function reasonCode(reason) return reason % COUNTED end
local function counted(reason) return reason >= COUNTED end

local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- state, attempts, reason, at (ms since the run began)
local function readRecord(key, index)
  local raw = redis.call('GETRANGE', key, index * RECORD, index * RECORD + RECORD - 1)
  if #raw < RECORD then return PENDING, 0, 0, 0 end
  local state, attempts, reason, at = struct.unpack('>BBHI6', raw)
  return state, attempts, reason, at
end

local function writeRecord(key, index, state, attempts, reason, at)
  if at < 0 then at = 0 end
  redis.call('SETRANGE', key, index * RECORD, struct.pack('>BBHI6', state, attempts, reason, at))
end

-- Returns the holder token and expiry of a page lease, or nil.
local function readLease(leaseKey)
  local lease = redis.call('GET', leaseKey)
  if not lease then return nil, 0 end
  local sep = string.find(lease, '|', 1, true)
  return string.sub(lease, 1, sep - 1), tonumber(string.sub(lease, sep + 1))
end

local function writeLease(leaseKey, leasesKey, page, token, expiry)
  redis.call('SET', leaseKey, token .. '|' .. expiry)
  redis.call('ZADD', leasesKey, expiry, page)
end

local function recordError(errorsKey, position, code, message, attempts, now)
  redis.call('HSET', errorsKey, position, cjson.encode({ code = code, message = message, attempts = attempts, at = now }))
end

-- Settles the in-flight records of a page whose sender lost it while a
-- request may have been on the wire. `inDoubt` 'report' (the default) marks
-- them `unknown`: never sent again silently. 'resend' (for a provider that
-- honours the idempotency key) makes them pending again, due now, to be sent
-- with the same key. Returns how many were settled.
local function expireInflight(runKey, recordsKey, errorsKey, badKey, page, now, inDoubt)
  local raw = redis.call('GET', recordsKey)
  if not raw then return 0 end
  local epoch = tonumber(redis.call('HGET', runKey, 'createdAt'))
  local pageSize = tonumber(redis.call('HGET', runKey, 'pageSize'))
  local resend = inDoubt == 'resend'
  local marked = 0
  for index = 0, math.floor(#raw / RECORD) - 1 do
    local state, attempts, reason = struct.unpack('>BBH', raw, index * RECORD + 1)
    if state == INFLIGHT then
      local position = page * pageSize + index
      if resend then
        writeRecord(recordsKey, index, PENDING, attempts, reason, now - epoch)
        recordError(errorsKey, position, 'LEASE_EXPIRED',
          'the worker sending this recipient stopped before it heard back from the provider; sending again with the same idempotency key',
          attempts, now)
      else
        writeRecord(recordsKey, index, UNKNOWN, attempts, reason, now - epoch)
        recordError(errorsKey, position, 'LEASE_EXPIRED',
          'the worker sending this recipient stopped before it heard back from the provider; it may or may not have been delivered',
          attempts, now)
        redis.call('ZADD', badKey, position, position)
      end
      marked = marked + 1
    end
  end
  if marked > 0 then
    redis.call('HINCRBY', runKey, 'inflight', -marked)
    if not resend then
      redis.call('HINCRBY', runKey, 'pending', -marked)
      redis.call('HINCRBY', runKey, 'unknown', marked)
    end
  end
  return marked
end

-- Ends the run once nothing is pending (in-flight counts as pending) and puts
-- the campaign in the status the run was created to leave it in. Returns 1
-- when this call completed the run.
local function completeIfDone(runKey, metaKey, now)
  local fields = redis.call('HMGET', runKey, 'status', 'pending', 'after', 'id')
  if (fields[1] ~= 'running' and fields[1] ~= 'paused') or tonumber(fields[2]) ~= 0 then return 0 end
  redis.call('HSET', runKey, 'status', 'completed', 'completedAt', now)
  if redis.call('HGET', metaKey, 'latestRun') == fields[4] then
    redis.call('HSET', metaKey, 'status', fields[3], 'updatedAt', now)
  end
  return 1
end
