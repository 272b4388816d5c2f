-- Queue deliveries: write each record (unless it exists) and put it in its lane, ordered by
-- gateway sequence; a lane that is not leased becomes due now (NX: a lane waiting for a retry
-- keeps its later time, so the new delivery waits behind the failing one).
-- ARGV: now, JSON list of {"id", "lane", "seq", "fields": [k, v, ...]}, force ("1": reset
-- an existing record, used by redrive). KEY names follow the layout in keys.py.
local now, items, force = ARGV[1], cjson.decode(ARGV[2]), ARGV[3] == '1'
local created = 0
for _, d in ipairs(items) do
  local key = 'incidents:delivery:' .. d.id
  if force or redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, unpack(d.fields))
    redis.call('ZADD', d.lane, d.seq, d.id)
    redis.call('ZREM', 'incidents:dead', d.id)
    if not redis.call('ZSCORE', 'incidents:lanes:leased', d.lane) then
      redis.call('ZADD', 'incidents:lanes:due', 'NX', now, d.lane)
    end
    created = created + 1
  end
end
return created
