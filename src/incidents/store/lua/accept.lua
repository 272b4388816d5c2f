-- Accept a batch of events atomically: all of it or none of it.
-- ARGV[1] is a JSON request:
--   {"events": [{"dedup": key, "id": ce id, "incident": id or "", "tail": json tail,
--                "docs": [{"key": k, "expect": version, "json": document}],
--                "index": [{"key": zset, "score": n, "member": m}]}],
--    "seq": seq key, "outbox": stream key, "event_prefix": p, "ids_prefix": p,
--    "timeline_prefix": p}
-- Returns {"ok", r1, r2, ...} where r is "new <seq> <incident>" or "dup <seq> <incident>",
-- or {"conflict", index, key, current version} when a versioned document moved on.
local req = cjson.decode(ARGV[1])
local results = {}
local versions = {}

for i, ev in ipairs(req.events) do
  local existing = redis.call('GET', ev.dedup)
  if existing then
    results[i] = 'dup ' .. existing
  else
    for _, d in ipairs(ev.docs) do
      local cur = versions[d.key]
      if cur == nil then
        cur = tonumber(redis.call('HGET', d.key, 'v') or '0')
      end
      if cur ~= d.expect then
        return {'conflict', i, d.key, cur}
      end
      versions[d.key] = d.expect + 1
    end
  end
end

for i, ev in ipairs(req.events) do
  if results[i] == nil then
    local seq = redis.call('INCR', req.seq)
    redis.call('SET', req.event_prefix .. seq, '{"sequence":' .. seq .. ev.tail)
    redis.call('SET', ev.dedup, seq .. ' ' .. ev.incident)
    redis.call('SADD', req.ids_prefix .. ev.id, seq)
    if ev.incident ~= '' then
      redis.call('ZADD', req.timeline_prefix .. ev.incident, seq, seq)
    end
    for _, d in ipairs(ev.docs) do
      redis.call('HSET', d.key, 'v', d.expect + 1, 'j', d.json)
    end
    for _, x in ipairs(ev.index) do
      redis.call('ZADD', x.key, x.score, x.member)
    end
    redis.call('XADD', req.outbox, '*', 'seq', seq)
    results[i] = 'new ' .. seq .. ' ' .. ev.incident
  end
end

table.insert(results, 1, 'ok')
return results
