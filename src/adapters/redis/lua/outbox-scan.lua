-- Which webhook endpoints have something to do in one campaign's outbox:
-- events after their cursor, or a delivery whose next attempt is due, and
-- nobody else holding their lease. One call per campaign per dispatcher tick.
-- KEYS: 1 the outbox stream, 2 the campaign's webhook hash
-- ARGV: per endpoint 3 values: name, epoch, the stream id it starts from when it has no cursor of this epoch
-- Returns {pending (1 when any endpoint has anything left, due or not), name, …} (the names with work due now)
-- @include clock
-- @include stream-ids

local now = wallMs()
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local lastId = last[1] and last[1][1] or nil
local out = { 0 }
for i = 1, #ARGV, 3 do
  local name, epoch = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', KEYS[2], 'c:' .. name, 'd:' .. name, 'l:' .. name)
  local work, due = false, false
  local delivery = f[2] and cjson.decode(f[2])
  if delivery and tostring(delivery.epoch) == epoch then
    work = true
    due = tonumber(delivery.nextAt) <= now
  elseif lastId then
    local cursor = ARGV[i + 2]
    if f[1] then
      local sep = string.find(f[1], '|', 1, true)
      if string.sub(f[1], 1, sep - 1) == epoch then cursor = string.sub(f[1], sep + 1) end
    end
    local id, off = cursorParts(cursor)
    local order = compareIds(lastId, id)
    work = order > 0 or (off > 0 and order == 0)
    due = work
  end
  if work then out[1] = 1 end
  if due and f[3] then
    local sep = string.find(f[3], '|', 1, true)
    due = tonumber(string.sub(f[3], sep + 1)) <= now
  end
  if due then out[#out + 1] = name end
end
return out
