-- Restore one accepted event read from an export or the archive, unless its (source, id) is
-- stored already. ARGV[1] is JSON {"ids", "source", "incident", "timeline", "sequence" (the one
-- it had), "deliver" (bool)}; ARGV[2] its JSON tail, what follows '{"sequence":<n>'.
-- It keeps its sequence when that is free (a later one raises the counter, so new events
-- continue past it), else takes the next. Under the sweeper's cursor, the cursor moves back
-- so that retention applies to it too. With "deliver" it is put on the outbox to fan out.
-- Returns {"dup", "<seq> <incident>"} or {"new", seq}.
-- KEYS: sequence counter, outbox, sweeper's cursor; the event key prefix in ARGV[3].
local r = cjson.decode(ARGV[1])
local existing = redis.call('HGET', r.ids, r.source)
if existing then
  return {'dup', existing}
end
local seq = tonumber(r.sequence)
if redis.call('EXISTS', ARGV[3] .. seq) == 1 then
  seq = redis.call('INCR', KEYS[1])
elseif tonumber(redis.call('GET', KEYS[1]) or '0') < seq then
  redis.call('SET', KEYS[1], seq)
end
local swept = tonumber(redis.call('GET', KEYS[3]) or '0')
if seq <= swept then
  redis.call('SET', KEYS[3], seq - 1)
end
redis.call('SET', ARGV[3] .. seq, '{"sequence":' .. seq .. ARGV[2])
redis.call('HSET', r.ids, r.source, seq .. ' ' .. r.incident)
if r.incident ~= '' then
  redis.call('ZADD', r.timeline, seq, seq)
end
if r.deliver then
  redis.call('XADD', KEYS[2], '*', 'seq', seq)
end
return {'new', seq}
