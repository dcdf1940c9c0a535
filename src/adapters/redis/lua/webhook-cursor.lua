-- One webhook endpoint's place in one campaign's outbox, changed only by the
-- holder of its lease (one deliverer at a time per endpoint and campaign, so
-- events go out in order). The hash (`{c:<id>}:wh`) holds per endpoint:
-- `c:<name>` its cursor, `d:<name>` the delivery it is making (JSON, so a
-- retry after a crash sends the very same window under the same id),
-- `l:<name>` the lease (`token|expiry ms`).
-- KEYS: 1 the campaign's webhook hash
-- ARGV: 1 op, 2 endpoint name, 3 token, 4 lease ms, 5 value
--   take     the lease, if free or expired (or ours): {'ok', cursor, delivery} | {'busy', ms left}
--   delivery store the delivery being made (value: JSON) and renew: {'ok'} | {'fenced'}
--   advance  the cursor to value, the delivery done: {'ok'} | {'fenced'}
--   renew    the lease only: {'ok'} | {'fenced'}
--   release  the lease: {'ok'}
-- @include clock

local now = wallMs()
local name, token = ARGV[2], ARGV[3]
local leaseField = 'l:' .. name
local lease = redis.call('HGET', KEYS[1], leaseField)
local holder, expiry = nil, 0
if lease then
  local sep = string.find(lease, '|', 1, true)
  holder, expiry = string.sub(lease, 1, sep - 1), tonumber(string.sub(lease, sep + 1))
end
local ours = holder == token and expiry > now

if ARGV[1] == 'take' then
  if holder and holder ~= token and expiry > now then return { 'busy', expiry - now } end
  redis.call('HSET', KEYS[1], leaseField, token .. '|' .. (now + tonumber(ARGV[4])))
  local f = redis.call('HMGET', KEYS[1], 'c:' .. name, 'd:' .. name)
  return { 'ok', f[1] or '', f[2] or '' }
end
if ARGV[1] == 'release' then
  if holder == token then redis.call('HDEL', KEYS[1], leaseField) end
  return { 'ok' }
end
if not ours then return { 'fenced' } end
redis.call('HSET', KEYS[1], leaseField, token .. '|' .. (now + tonumber(ARGV[4])))
if ARGV[1] == 'delivery' then
  redis.call('HSET', KEYS[1], 'd:' .. name, ARGV[5])
elseif ARGV[1] == 'advance' then
  redis.call('HSET', KEYS[1], 'c:' .. name, ARGV[5])
  redis.call('HDEL', KEYS[1], 'd:' .. name)
end
return { 'ok' }
