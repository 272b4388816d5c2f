-- The id index records (store/event_index.py): one id's value holds its stored events side
-- by side, "<sequence> <source length> <incident length> <source><incident>" each.
-- Included (--! include event_index) by the scripts that read or write the index.

-- The record of `source` in `value`: its sequence, its incident id, and where it starts and
-- ends in `value`; nil when there is none.
local function index_find(value, source)
  if not value then
    return nil
  end
  local at = 1
  while at <= #value do
    local seq, slen, ilen, start = string.match(value, '^(%d+) (%d+) (%d+) ()', at)
    if not seq then
      error('not an id index value')
    end
    local stop = start + tonumber(slen) + tonumber(ilen) - 1
    if string.sub(value, start, start + tonumber(slen) - 1) == source then
      return seq, string.sub(value, start + tonumber(slen), stop), at, stop
    end
    at = stop + 1
  end
  return nil
end

local function index_record(seq, source, incident)
  return string.format('%d %d %d ', seq, #source, #incident) .. source .. incident
end
