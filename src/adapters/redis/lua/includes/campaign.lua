-- Shared by the lifecycle scripts.
-- @include clock
-- @include outbox
local nowMs = wallMs

-- True when `status` is one of the comma-separated `allowed` states.
local function allowed(status, csv)
  return string.find(',' .. csv .. ',', ',' .. status .. ',', 1, true) ~= nil
end

-- The caller named the run it read as latest; refuse if another run started since.
local function latestIs(metaKey, runId)
  return (redis.call('HGET', metaKey, 'latestRun') or '') == runId
end
