-- Restore one accepted event read from an export or the archive into one partition, unless
-- its (source, id) is stored there already. ARGV[1] is JSON {"ids", "id", "source",
-- "incident", "timeline", "sequence" (the one it had), "deliver" (bool), "events" (event
-- bucket key prefix), "bucket" (the sequences an event bucket spans), "count" (partitions),
-- "partition" (this one's number), "after" (a sequence this import already gave out here by
-- numbering anew)}; ARGV[2] its JSON tail, what follows '[<sequence>'. Every key is the
-- partition's.
-- It keeps its sequence when that is one of this partition's (sequence % count), is free,
-- and is past "after" (so what an import numbers anew never comes after what it restores
-- next, and each timeline keeps its order); a kept one raises the partition's counter, so
-- new events continue past it. Else it takes the partition's next. Under the sweeper's
-- cursor, the cursor moves back so that retention applies to it too. With "deliver" it is
-- put on the outbox to fan out.
-- Returns {"dup", "<seq> <incident>"} or {"new", seq}.
-- KEYS: the partition's sequence counter, outbox, sweeper's cursor.
--! include event_index
--! include event_keys
local r = cjson.decode(ARGV[1])
local first = redis.call('HGET', r.ids, r.id)
local stored, incident = index_lookup(r.ids, r.id, r.source, first)
if stored then
  return {'dup', stored .. ' ' .. incident}
end
local seq = tonumber(r.sequence)
local count, partition = tonumber(r.count), tonumber(r.partition)
if seq % count ~= partition or seq <= tonumber(r.after)
    or redis.call('HEXISTS', event_hash(r.events, r.bucket, seq), seq) == 1 then
  seq = redis.call('INCR', KEYS[1]) * count + partition
else
  local counter = (seq - partition) / count
  if tonumber(redis.call('GET', KEYS[1]) or '0') < counter then
    redis.call('SET', KEYS[1], string.format('%d', counter))
  end
end
local swept = tonumber(redis.call('GET', KEYS[3]) or '0')
if seq <= swept then
  redis.call('SET', KEYS[3], seq - 1)
end
redis.call('HSET', event_hash(r.events, r.bucket, seq), seq, '[' .. seq .. ARGV[2])
index_add(r.ids, r.id, r.source, seq, r.incident, first)
if r.incident ~= '' then
  redis.call('ZADD', r.timeline, seq, seq)
end
if r.deliver then
  redis.call('XADD', KEYS[2], '*', 'seq', seq)
end
return {'new', seq}
