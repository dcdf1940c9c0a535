-- A run's pace (src/domain/windows.ts), kept in its hash for the workers'
-- limiter calls: `pace`, recipients a second at the provider. A campaign's
-- `{ spreadOver }` becomes a pace of pending ÷ time: `spreadEnd` (wall ms)
-- while the run sends, `spreadLeft` (ms) while it is paused — the spread's
-- clock stops with the run, and a resume spreads what is pending over what
-- is left of it (a run that used all of it keeps its pace: a spread never
-- turns into a burst).

local function paceOver(pending, ms)
  return math.max(pending, 1) * 1000 / ms
end

-- Sets a run's pace from the campaign's `tps` or `spreadMs` (nil or 0 each: none).
local function setRunPace(runKey, tps, spreadMs, now)
  if tps and tps > 0 then
    redis.call('HSET', runKey, 'pace', tps)
    redis.call('HDEL', runKey, 'spreadEnd', 'spreadLeft')
  elseif spreadMs and spreadMs > 0 then
    local run = redis.call('HMGET', runKey, 'pending', 'status')
    redis.call('HSET', runKey, 'pace', paceOver(tonumber(run[1] or '0'), spreadMs))
    if run[2] == 'paused' then
      redis.call('HSET', runKey, 'spreadLeft', spreadMs)
      redis.call('HDEL', runKey, 'spreadEnd')
    else
      redis.call('HSET', runKey, 'spreadEnd', now + spreadMs)
      redis.call('HDEL', runKey, 'spreadLeft')
    end
  else
    redis.call('HDEL', runKey, 'pace', 'spreadEnd', 'spreadLeft')
  end
end

local function pauseSpread(runKey, now)
  local ends = tonumber(redis.call('HGET', runKey, 'spreadEnd') or '')
  if not ends then return end
  redis.call('HSET', runKey, 'spreadLeft', math.max(0, ends - now))
  redis.call('HDEL', runKey, 'spreadEnd')
end

local function resumeSpread(runKey, now)
  local left = tonumber(redis.call('HGET', runKey, 'spreadLeft') or '')
  if not left then return end
  if left > 0 then redis.call('HSET', runKey, 'pace', paceOver(tonumber(redis.call('HGET', runKey, 'pending') or '0'), left)) end
  redis.call('HSET', runKey, 'spreadEnd', now + left)
  redis.call('HDEL', runKey, 'spreadLeft')
end
