-- Queue deliveries: write each record (unless it exists) and put it in its lane, ordered by
-- gateway sequence; a lane that is not leased becomes due now (NX: a lane waiting for a retry
-- keeps its later time, so the new delivery waits behind the failing one). A leased lane is
-- left to its holder, which goes on with what was queued behind it when it completes.
-- ARGV: now, JSON list of {"id", "lane", "seq", "bucket", "record"}, force ("1": reset an
-- existing record, used by redrive). KEY names follow the layout in keys.py. A record is the
-- field "id" of the hash "bucket" (one per ARGV[9] sequences, keys.deliveries), and the
-- buckets holding any are listed for retention.
-- When a lane becomes due, one entry is added to the wake stream KEYS[1] (capped at about
-- ARGV[4] entries): idle workers block on it, so they claim new work at once, without polling.
-- Routing (KEYS[2]: the routing lease, KEYS[3]: the outbox): ARGV[5] is the router's lease
-- token, ARGV[6] the lease in ms, ARGV[7] the router's consumer group, ARGV[8] JSON list of the
-- outbox entry ids routed. Only while the token still holds the lease are the deliveries
-- queued, the entries acknowledged and the lease extended, in one step; otherwise nothing is
-- written and -1 returned (another router routes them again). Else: how many were created.
local now, items, force = ARGV[1], cjson.decode(ARGV[2]), ARGV[3] == '1'
local routing = KEYS[2] ~= nil
if routing and redis.call('GET', KEYS[2]) ~= ARGV[5] then
  return -1
end
local created, woke = 0, false
for _, d in ipairs(items) do
  if force or redis.call('HEXISTS', d.bucket, d.id) == 0 then
    redis.call('HSET', d.bucket, d.id, d.record)
    redis.call('ZADD', d.lane, d.seq, d.id)
    local bucket = math.floor(tonumber(d.seq) / tonumber(ARGV[9]))
    redis.call('ZADD', 'incidents:delivery-buckets', bucket, bucket)
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
if routing then
  local ids = cjson.decode(ARGV[8])
  if #ids > 0 then
    redis.call('XACK', KEYS[3], ARGV[7], unpack(ids))
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return created
