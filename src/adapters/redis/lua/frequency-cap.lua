-- Frequency caps across campaigns: at most `max` messages to one recipient in
-- any window of `buckets` buckets of `bucketMs`. One small hash per capped
-- recipient (bucket → count, expiring after the window), checked and counted
-- in one step per recipient, so two campaigns racing for the same recipient
-- cannot both pass. `reserve` counts one message, in the current bucket, for
-- each recipient that fits and answers that bucket; `release` gives one back
-- to the bucket it was counted in (its send did not happen after all),
-- whatever bucket is current by then.
-- KEYS: the counters of the recipients (one hash tag: callers group them by shard)
-- ARGV: 1 bucket ms, 2 buckets, 3 max, 4 'reserve' | 'release', 5 the bucket to release from
-- Returns {bucket, a string of '1' (fits, counted) / '0' (over the cap), one per key}
-- @include clock

local now = wallMs()
local bucketMs, buckets, max, mode = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local current = math.floor(now / bucketMs)
local ttl = bucketMs * (buckets + 1)
local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  if mode == 'release' then
    local bucket = ARGV[5]
    if tonumber(redis.call('HGET', key, bucket) or '0') > 0 then redis.call('HINCRBY', key, bucket, -1) end
    out[#out + 1] = '1'
  else
    local fields = redis.call('HGETALL', key)
    local count = 0
    for j = 1, #fields, 2 do
      local bucket = tonumber(fields[j])
      if bucket > current - buckets then
        count = count + tonumber(fields[j + 1])
      else
        redis.call('HDEL', key, fields[j])
      end
    end
    if count < max then
      redis.call('HINCRBY', key, current, 1)
      redis.call('PEXPIRE', key, ttl)
      out[#out + 1] = '1'
    else
      out[#out + 1] = '0'
    end
  end
end
return { current, table.concat(out) }
