-- Stream ids (`<ms>-<seq>`) and outbox cursors (`<id>` or `<id>/<events of that entry behind it>`, src/domain/outbox.ts).
local function idParts(id)
  local sep = string.find(id, '-', 1, true)
  if not sep then return tonumber(id) or 0, 0 end
  return tonumber(string.sub(id, 1, sep - 1)) or 0, tonumber(string.sub(id, sep + 1)) or 0
end

local function compareIds(a, b)
  local am, as = idParts(a)
  local bm, bs = idParts(b)
  if am ~= bm then return am < bm and -1 or 1 end
  if as ~= bs then return as < bs and -1 or 1 end
  return 0
end

local function cursorParts(cursor)
  local sep = string.find(cursor, '/', 1, true)
  if not sep then return cursor, 0 end
  return string.sub(cursor, 1, sep - 1), tonumber(string.sub(cursor, sep + 1))
end
