-- Removes the outbox's recipient entries every endpoint taking recipient
-- events of the campaign has behind its cursor (run events stay: the events
-- API shows them, and they are few), and none newer than `before` (an
-- endpoint made since may not be known to every dispatcher yet). It goes on
-- from where it stopped last time (`tpos` in the webhook hash), so run events
-- piling up at the head of the stream never stop it.
-- KEYS: 1 the outbox stream, 2 the campaign's webhook hash
-- ARGV: 1 before (stream id), 2 most entries looked at, then per endpoint 3 values: name, epoch, its start without a cursor
-- Returns {how many entries went, 1 when recipient entries are left after them}
-- @include stream-ids

local bound, inclusive = ARGV[1], false
for i = 3, #ARGV, 3 do
  local cursor = ARGV[i + 2]
  local stored = redis.call('HGET', KEYS[2], 'c:' .. ARGV[i])
  if stored then
    local sep = string.find(stored, '|', 1, true)
    if string.sub(stored, 1, sep - 1) == ARGV[i + 1] then cursor = string.sub(stored, sep + 1) end
  end
  local id, off = cursorParts(cursor)
  local order = compareIds(id, bound)
  -- A cursor inside an entry (off > 0) has not passed it: only what is before it goes.
  if order < 0 or (order == 0 and off > 0) then bound, inclusive = id, off == 0 end
end
local function isRecipients(entry) return entry[2][1] == 'type' and entry[2][2] == 'recipients' end
local from = redis.call('HGET', KEYS[2], 'tpos')
local entries = redis.call('XRANGE', KEYS[1], from and '(' .. from or '-', bound, 'COUNT', tonumber(ARGV[2]))
local ids, last = {}, nil
for _, entry in ipairs(entries) do
  if entry[1] == bound and not inclusive then break end
  if isRecipients(entry) then ids[#ids + 1] = entry[1] end
  last = entry[1]
end
if #ids > 0 then redis.call('XDEL', KEYS[1], unpack(ids)) end
if last then redis.call('HSET', KEYS[2], 'tpos', last) end
local left = 0
if #entries == tonumber(ARGV[2]) then
  left = 1
else
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], bound, '+', 'COUNT', 100)) do
    if isRecipients(entry) then left = 1 break end
  end
end
return { #ids, left }
