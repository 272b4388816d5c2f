-- The id index (store/event_index.py). In the bucket of an event's id, field <id> holds the
-- first stored event with that id, "<sequence> <source length> <incident length>
-- <source><incident>" (lengths in bytes), or "-" once that one is gone while others stay;
-- the event of each other source is under field "<id>\n<source>" (a CloudEvents string holds
-- no control character), and field "<id>\n" counts those. So a look-up reads one or two
-- fields however many sources share an id. Included (--! include event_index) by the
-- scripts that read or write the index.

-- A record's sequence, source and incident id.
local function index_parse(value)
  local seq, slen, ilen, start = string.match(value, '^(%d+) (%d+) (%d+) ()')
  if not seq then
    error('not an id index record')
  end
  slen = tonumber(slen)
  local source = string.sub(value, start, start + slen - 1)
  return seq, source, string.sub(value, start + slen, start + slen + tonumber(ilen) - 1)
end

local function index_record(seq, source, incident)
  return string.format('%d %d %d ', seq, #source, #incident) .. source .. incident
end

-- The stored event of (id, source) in `bucket`, given the value of field <id> (`first`, as
-- read): its sequence and incident id, or nil.
local function index_lookup(bucket, id, source, first)
  if not first then
    return nil
  end
  if first ~= '-' then
    local seq, src, incident = index_parse(first)
    if src == source then
      return seq, incident
    end
  end
  local other = redis.call('HGET', bucket, id .. '\n' .. source)
  if other then
    local seq, _, incident = index_parse(other)
    return seq, incident
  end
  return nil
end

-- Index a new event under (id, source), given the value of field <id> as it is now; returns
-- that value after the write.
local function index_add(bucket, id, source, seq, incident, first)
  local record = index_record(seq, source, incident)
  if not first then
    redis.call('HSET', bucket, id, record)
    return record
  end
  redis.call('HSET', bucket, id .. '\n' .. source, record)
  redis.call('HINCRBY', bucket, id .. '\n', 1)
  return first
end
