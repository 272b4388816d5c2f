-- Queue deliveries in one partition: write each record (unless it exists) and put it in its
-- lane, ordered by gateway sequence; a lane that is not leased becomes due now (NX: a lane
-- waiting for a retry keeps its later time, so the new delivery waits behind the failing one).
-- A leased lane is left to its holder, which goes on with what was queued behind it when it
-- completes.
-- ARGV: now, JSON list of {"id", "lane", "seq", "bucket", "record"}, force ("1": reset an
-- existing record, used by redrive). A record is the field "id" of the hash "bucket" (one per
-- ARGV[9] sequences of the partition, Keyspace.deliveries), and the buckets holding any are
-- listed for retention.
-- KEYS, all of the partition: 1 the delivery buckets, 2 the dead letters, 3 the leased lanes,
-- 4 the due lanes, 5 the routing lease, 6 the outbox; then, on one Redis with one partition,
-- 7 the wake stream: when a lane becomes due, one entry is added to it (capped at about
-- ARGV[4] entries): idle workers block on it, so they claim new work at once, without polling.
-- Without KEYS[7] (the stream is global, elsewhere) the caller adds that entry.
-- Routing (when ARGV[5], the router's lease token, is not empty): ARGV[6] the lease in ms,
-- ARGV[7] the router's consumer group, ARGV[8] JSON list of the outbox entry ids routed. Only
-- while the token still holds the lease are the deliveries queued, the entries acknowledged
-- and the lease extended, in one step; otherwise nothing is written and {-1, 0} returned
-- (another router routes them again). Else: {how many were created, 1 if a lane became due}.
local buckets, dead, leased, due = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local lock, outbox, wake = KEYS[5], KEYS[6], KEYS[7]
local now, items, force = ARGV[1], cjson.decode(ARGV[2]), ARGV[3] == '1'
local routing = ARGV[5] ~= ''
if routing and redis.call('GET', lock) ~= ARGV[5] then
  return {-1, 0}
end
local created, woke = 0, false
for _, d in ipairs(items) do
  if force or redis.call('HEXISTS', d.bucket, d.id) == 0 then
    redis.call('HSET', d.bucket, d.id, d.record)
    redis.call('ZADD', d.lane, d.seq, d.id)
    local bucket = math.floor(tonumber(d.seq) / tonumber(ARGV[9]))
    redis.call('ZADD', buckets, bucket, bucket)
    redis.call('ZREM', dead, d.id)
    if not redis.call('ZSCORE', leased, d.lane) then
      if redis.call('ZADD', due, 'NX', now, d.lane) == 1 then
        woke = true
      end
    end
    created = created + 1
  end
end
if woke and wake then
  redis.call('XADD', wake, 'MAXLEN', '~', ARGV[4], '*', 'due', now)
end
if routing then
  local ids = cjson.decode(ARGV[8])
  if #ids > 0 then
    redis.call('XACK', outbox, ARGV[7], unpack(ids))
  end
  redis.call('PEXPIRE', lock, ARGV[6])
end
return {created, woke and 1 or 0}
