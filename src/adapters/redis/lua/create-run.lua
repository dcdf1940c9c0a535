-- Creates a run of a campaign if the campaign is in one of the allowed states,
-- and moves the campaign to `running`. Atomic, so concurrent starts make
-- exactly one run, and a run id that exists is never made again.
-- KEYS: 1 campaign meta, 2 run hash, 3 runs zset
-- ARGV: 1 runId, 2 allowed campaign states (comma separated),
--       3 campaign status after the run completes ('' : the status it had), 4 trigger,
--       5 largest step of the run's lease clock (ms, includes/ledger.lua runClocks),
--       6.. optional list version the run sends to instead of the current one:
--       version, total, pages, page size, buckets (a retry run's own list),
--       ('' each for the current one), 11 '1' for a run aside (a test send):
--       the campaign's status and latest run stay as they are, so it never
--       counts as the campaign's, 12 the campaign's updatedAt (ms) as the
--       caller checked it ('' : any): a campaign changed since (a PATCH, an
--       upload) is refused, 'changed', 13 the run's number ('' : none): its
--       recipients' idempotency keys carry it, so a receipt finds them
--       (src/domain/ids.ts receiptKey), 14 the instant the run was due (ms; '' : now): a
--       scheduled occurrence's own time, from which its deadline and local times count
-- The campaign's delivery windows (src/domain/windows.ts windowFields) become
-- the run's: `startAt`, `expiresAt` (the earlier of the campaign's expiresAt
-- and the start plus its expiresAfter), `deliverAt` and its pace
-- (includes/pace.lua), and its fallback rules (`fb`, `fbMax`) — none for a run aside. A
-- run whose deadline has passed is not made ('expired'): a scheduled one
-- that every worker missed until then is skipped whole.
-- Returns {'ok', createdAtMs} | {'state', status} | {'exists', status} | {'empty', status} | {'changed', status} | {'expired', status, deadline} | {'missing'}
-- @include ledger
-- @include pace

local status = redis.call('HGET', KEYS[1], 'status')
if not status then return { 'missing' } end
if not string.find(',' .. ARGV[2] .. ',', ',' .. status .. ',', 1, true) then return { 'state', status } end
if redis.call('EXISTS', KEYS[2]) == 1 then return { 'exists', status } end
if ARGV[12] and ARGV[12] ~= '' and redis.call('HGET', KEYS[1], 'updatedAt') ~= ARGV[12] then return { 'changed', status } end
local meta = redis.call('HMGET', KEYS[1], 'priority', 'rv', 'total', 'pages', 'pageSize', 'buckets', 'expiresAt', 'expiresAfter', 'paceTps', 'paceSpreadMs', 'deliverAt', 'fb', 'fbMax', 'provider', 'fallback')
local list = { rv = meta[2], total = meta[3], pages = meta[4], pageSize = meta[5], buckets = meta[6] }
if ARGV[6] and ARGV[6] ~= '' then
  list = { rv = ARGV[6], total = ARGV[7], pages = ARGV[8], pageSize = ARGV[9], buckets = ARGV[10] }
end
local PRIORITY_CLASS = { high = 0, normal = 1, low = 2 }
local total = tonumber(list.total)
if total == 0 then return { 'empty', status } end

-- The message's locale tags, sorted: a record's locale code k is the k-th (includes/ledger.lua LOCALE).
local tags = {}
local message = redis.call('HGET', KEYS[1], 'message')
if message then
  local ok, decoded = pcall(cjson.decode, message)
  if ok and type(decoded) == 'table' and type(decoded.locales) == 'table' then
    for tag in pairs(decoded.locales) do tags[#tags + 1] = tag end
    -- Byte order, as JavaScript sorts these ASCII tags (Lua's < follows the server's LC_COLLATE).
    table.sort(tags, function(a, b)
      for i = 1, math.min(#a, #b) do
        local x, y = string.byte(a, i), string.byte(b, i)
        if x ~= y then return x < y end
      end
      return #a < #b
    end)
  end
end

local now = wallMs()
local startAt = tonumber(ARGV[14] or '') or now
-- A run aside (a test send) shows the message now: no window applies to it.
local aside = ARGV[11] == '1'
local deadline = not aside and tonumber(meta[7] or '') or nil
local expiresAfter = not aside and tonumber(meta[8] or '') or nil
if expiresAfter and (not deadline or startAt + expiresAfter < deadline) then deadline = startAt + expiresAfter end
if deadline and deadline <= now then return { 'expired', status, tostring(deadline) } end
local after = ARGV[3]
if after == '' then after = status end
redis.call('HSET', KEYS[2],
  'id', ARGV[1], 'status', 'running', 'trigger', ARGV[4], 'after', after,
  'createdAt', now, 'activeAt', now,
  'total', total, 'pending', total, 'inflight', 0, 'sent', 0, 'failed', 0, 'unknown', 0, 'skipped', 0,
  'pages', list.pages, 'pageSize', list.pageSize, 'buckets', list.buckets, 'rv', list.rv, 'cursor', 0, 'gen', 1,
  'priorityClass', PRIORITY_CLASS[meta[1] or 'normal'] or 1, 'clkStep', ARGV[5], 'locales', table.concat(tags, ','))
redis.call('ZADD', KEYS[3], now, ARGV[1])
if ARGV[13] and ARGV[13] ~= '' then redis.call('HSET', KEYS[2], 'no', ARGV[13]) end
redis.call('HSET', KEYS[2], 'startAt', startAt)
if deadline then redis.call('HSET', KEYS[2], 'expiresAt', deadline) end
if not aside then
  setRunPace(KEYS[2], tonumber(meta[9] or ''), tonumber(meta[10] or ''), now)
  if meta[11] and meta[11] ~= '' then redis.call('HSET', KEYS[2], 'deliverAt', meta[11]) end
  -- Its fallback rules (src/domain/fallback.ts fallbackRules), as they are now: a later edit never changes a run.
  -- and its providers by leg (`chain`, JSON), so its results name the channel whatever the campaign becomes.
  if meta[12] and meta[12] ~= '' then
    local chain = { meta[14] }
    local ok, legs = pcall(cjson.decode, meta[15] or '')
    if ok and type(legs) == 'table' then
      for _, leg in ipairs(legs) do chain[#chain + 1] = leg.provider end
    end
    redis.call('HSET', KEYS[2], 'fb', meta[12], 'fbMax', meta[13] or '', 'chain', cjson.encode(chain))
  end
end
if ARGV[11] ~= '1' then redis.call('HSET', KEYS[1], 'status', 'running', 'latestRun', ARGV[1], 'updatedAt', now) end
emit(KEYS[1], 'run.started', ARGV[1], now, 'trigger', ARGV[4], 'total', total)
return { 'ok', tostring(now) }
