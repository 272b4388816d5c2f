-- Queue deliveries: write each record (unless it exists) and put it in its lane, ordered by
-- gateway sequence; a lane that is not leased becomes due now (NX: a lane waiting for a retry
-- keeps its later time, so the new delivery waits behind the failing one).
-- ARGV: now, JSON list of {"id", "lane", "seq", "fields": [k, v, ...]}, force ("1": reset
-- an existing record, used by redrive). KEY names follow the layout in keys.py.
-- When a lane becomes due, one entry is added to the wake stream KEYS[1] (capped at about
-- ARGV[4] entries): idle workers block on it, so they claim new work at once, without polling.
local now, items, force = ARGV[1], cjson.decode(ARGV[2]), ARGV[3] == '1'
local created, woke = 0, false
for _, d in ipairs(items) do
  local key = 'incidents:delivery:' .. d.id
  if force or redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, unpack(d.fields))
    redis.call('ZADD', d.lane, d.seq, d.id)
    redis.call('ZREM', 'incidents:dead', d.id)
    if not redis.call('ZSCORE', 'incidents:lanes:leased', d.lane) then
      if redis.call('ZADD', 'incidents:lanes:due', 'NX', now, d.lane) == 1 then
        woke = true
      end
    end
    created = created + 1
  end
end
if woke then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'due', now)
end
return created
