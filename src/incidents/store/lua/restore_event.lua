-- Restore one accepted event read from an export or the archive, unless its (source, id) is
-- stored already. ARGV[1] is JSON {"ids", "id", "source", "incident", "timeline", "sequence"
-- (the one it had), "deliver" (bool), "events" (event bucket key prefix), "bucket" (sequences
-- per event bucket)}; ARGV[2] its JSON tail, what follows '[<sequence>'.
-- It keeps its sequence when that is free (a later one raises the counter, so new events
-- continue past it), else takes the next. Under the sweeper's cursor, the cursor moves back
-- so that retention applies to it too. With "deliver" it is put on the outbox to fan out.
-- Returns {"dup", "<seq> <incident>"} or {"new", seq}.
-- KEYS: sequence counter, outbox, sweeper's cursor.
--! include event_index
--! include event_keys
local r = cjson.decode(ARGV[1])
local first = redis.call('HGET', r.ids, r.id)
local stored, incident = index_lookup(r.ids, r.id, r.source, first)
if stored then
  return {'dup', stored .. ' ' .. incident}
end
local seq = tonumber(r.sequence)
if redis.call('HEXISTS', event_hash(r.events, r.bucket, seq), seq) == 1 then
  seq = redis.call('INCR', KEYS[1])
elseif tonumber(redis.call('GET', KEYS[1]) or '0') < seq then
  redis.call('SET', KEYS[1], seq)
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
