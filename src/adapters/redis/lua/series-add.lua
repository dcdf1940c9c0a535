-- Adds a worker's per-second counts to a run's time series (src/app/run-series.ts):
-- a hash of slots, one per second modulo the window, each "epoch second,c1,c2,…"
-- (the outcomes in SERIES_OUTCOMES order); a slot holding an older second is
-- recycled. Bounded by the window whatever the run's length, and gone a
-- window after the run last counted anything.
-- KEYS: 1 the series hash
-- ARGV: 1 window (seconds), 2 outcomes per point, then per point: epoch second, then its counts
local window, width = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 3, #ARGV, width + 1 do
  local at = tonumber(ARGV[i])
  local slot = at % window
  local counts = {}
  local current = redis.call('HGET', KEYS[1], slot)
  local fields = {}
  if current then
    for part in string.gmatch(current, '[^,]+') do fields[#fields + 1] = tonumber(part) end
  end
  local same = fields[1] == at
  -- A slot holding a newer second stays (a worker whose clock is behind by a window or more).
  if not (fields[1] and fields[1] > at) then
    for k = 1, width do
      counts[k] = tonumber(ARGV[i + k]) + (same and (fields[k + 1] or 0) or 0)
    end
    redis.call('HSET', KEYS[1], slot, at .. ',' .. table.concat(counts, ','))
  end
end
-- Gone a window after the last count: nothing older is ever read.
redis.call('EXPIRE', KEYS[1], window + 60)
return 1
