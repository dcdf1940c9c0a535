-- Shared by the lifecycle scripts.
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- True when `status` is one of the comma-separated `allowed` states.
local function allowed(status, csv)
  return string.find(',' .. csv .. ',', ',' .. status .. ',', 1, true) ~= nil
end

-- The caller named the run it read as latest; refuse if another run started since.
local function latestIs(metaKey, runId)
  return (redis.call('HGET', metaKey, 'latestRun') or '') == runId
end
