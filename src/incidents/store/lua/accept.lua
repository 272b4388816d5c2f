-- Accept groups of events. Each group (one request's events) is stored whole or not at all;
-- groups are independent, so one group's conflict does not hold back the others.
-- ARGV[1] is a JSON request:
--   {"groups": [[{"ids": key, "id": id, "source": source, "incident": id or "",
--                 "timeline": key or "", "docs": [{"key": k, "expect": version}],
--                 "index": [{"key": zset, "score": n, "member": m}]}, ...], ...],
--    "events": event bucket key prefix, "bucket": sequences per event bucket,
--    "count": partitions, "partition": this one's number}
-- KEYS[1] is the partition's sequence counter, KEYS[2] its outbox stream: every key the
-- script touches is of that one partition. The counter's n-th event gets sequence
-- n * count + partition (store/keys.py: Partitions.sequence).
-- "ids" is the id index bucket of the event's id (its dedup check too, event_index.lua).
-- ARGV[2..] are the big strings, as they are stored (never escaped into the request and
-- decoded again): for each event in order its JSON tail (what follows '[<sequence>'), then
-- the JSON of each of its documents.
-- Returns one reply per group, in order: {"ok", r1, r2, ...} where r is
-- "new <seq> <incident>" or "dup <seq> <incident>", or {"conflict", index, key, current
-- version} when a versioned document moved on (nothing of that group is stored).
--! include event_index
--! include event_keys
local req = cjson.decode(ARGV[1])

local at = 2
for _, events in ipairs(req.groups) do
  for _, ev in ipairs(events) do
    ev.tail = ARGV[at]
    at = at + 1
    for _, d in ipairs(ev.docs) do
      d.json = ARGV[at]
      at = at + 1
    end
  end
end

local function check(events, results)
  local versions = {}
  for i, ev in ipairs(events) do
    ev.known = redis.call('HGET', ev.ids, ev.id)
    local seq, incident = index_lookup(ev.ids, ev.id, ev.source, ev.known)
    if seq then
      results[i] = 'dup ' .. seq .. ' ' .. incident
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
  return nil
end

local function store(events, results)
  local written = {} -- the id index's <id> fields this group wrote, over what check() read
  for i, ev in ipairs(events) do
    local slot = ev.ids .. ' ' .. ev.id
    local first = written[slot] or ev.known
    local twice, incident
    if results[i] == nil and written[slot] then -- the id was stored earlier in this group
      twice, incident = index_lookup(ev.ids, ev.id, ev.source, first)
    end
    if twice then -- the same event earlier in this group
      results[i] = 'dup ' .. twice .. ' ' .. incident
    elseif results[i] == nil then
      local seq = redis.call('INCR', KEYS[1]) * req.count + req.partition
      redis.call('HSET', event_hash(req.events, req.bucket, seq), seq, '[' .. seq .. ev.tail)
      written[slot] = index_add(ev.ids, ev.id, ev.source, seq, ev.incident, first)
      if ev.incident ~= '' then
        redis.call('ZADD', ev.timeline, seq, seq)
      end
      for _, d in ipairs(ev.docs) do
        redis.call('HSET', d.key, 'v', d.expect + 1, 'j', d.json)
      end
      for _, x in ipairs(ev.index) do
        redis.call('ZADD', x.key, x.score, x.member)
      end
      redis.call('XADD', KEYS[2], '*', 'seq', seq)
      results[i] = 'new ' .. seq .. ' ' .. ev.incident
    end
  end
  table.insert(results, 1, 'ok')
  return results
end

local replies = {}
for g, events in ipairs(req.groups) do
  local results = {}
  local conflict = check(events, results)
  if conflict then
    replies[g] = conflict
  else
    replies[g] = store(events, results)
  end
end
return replies
