-- Moves a run's fan-out cursor after the pages in [from, to) were enqueued.
-- Compare-and-set: of two pumps that enqueued the same pages, one advances.
-- KEYS: 1 run, 2 open, 3 unfinished
-- ARGV: 1 from (the cursor the caller read), 2 to
-- Returns {'ok'} | {'moved', cursor} | {'inactive', status}

local run = redis.call('HMGET', KEYS[1], 'status', 'cursor')
if run[1] ~= 'running' then return { 'inactive', run[1] or 'missing' } end
if tonumber(run[2]) ~= tonumber(ARGV[1]) then return { 'moved', run[2] } end
for page = tonumber(ARGV[1]), tonumber(ARGV[2]) - 1 do
  redis.call('SADD', KEYS[2], page)
  redis.call('SADD', KEYS[3], page)
end
redis.call('HSET', KEYS[1], 'cursor', ARGV[2])
return { 'ok' }
