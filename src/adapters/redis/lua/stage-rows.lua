-- Adds a chunk of rows to a list being staged (an upload), in order: an id
-- seen before in this list is a duplicate (the first one wins); a new one
-- gets the next position in the index. The staged list is invisible until
-- swap-recipients makes it current.
-- KEYS: 1 staging state hash (accepted so far)
-- ARGV: 1 key prefix of the staged index buckets (…:ix:<version>:), then (bucket, id) pairs
-- Returns a string of '1' (new) and '0' (duplicate), one per row

local accepted = tonumber(redis.call('HGET', KEYS[1], 'accepted') or '0')
local prefix = ARGV[1]
local out = {}
for i = 2, #ARGV, 2 do
  if redis.call('HSETNX', prefix .. ARGV[i], ARGV[i + 1], accepted) == 1 then
    accepted = accepted + 1
    out[#out + 1] = '1'
  else
    out[#out + 1] = '0'
  end
end
redis.call('HSET', KEYS[1], 'accepted', accepted)
return table.concat(out)
