-- Finds a provider's message id among those remembered (redis-message-ids.ts):
-- each key is one day of one bucket, a string of 16-byte records
-- (7 bytes of the id's fingerprint, the run number in 5, the position in 4).
-- KEYS: the days to look in, newest first (one bucket: one hash tag)
-- ARGV: 1 the fingerprint (7 bytes)
-- Returns the 9 bytes after it, or false
for _, key in ipairs(KEYS) do
  local data = redis.call('GET', key) or ''
  local from = 1
  while true do
    local at = string.find(data, ARGV[1], from, true)
    if not at then break end
    if (at - 1) % 16 == 0 then return string.sub(data, at + 7, at + 15) end
    from = at + 1
  end
end
return false
