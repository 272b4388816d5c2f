-- How many entries of the retained outbox stream the router has not routed yet (read but not
-- acknowledged, plus those after the last one it read), counted up to ARGV[3] (default 1:
-- "is there any"); when there are none, trim the stream to about ARGV[2] entries (0: do not
-- trim). Routed entries are kept for readers that tail recent events; an entry not yet routed
-- is never trimmed, however long the backlog grows.
-- KEYS[1]: the stream; ARGV[1]: the router's consumer group.
local stream, group, keep = KEYS[1], ARGV[1], tonumber(ARGV[2])
local cap = tonumber(ARGV[3] or '1')
if redis.call('EXISTS', stream) == 0 then
  return 0
end
local delivered, pending = nil, 0
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if info['name'] == group then
    delivered, pending = info['last-delivered-id'], tonumber(info['pending'])
  end
end
local unrouted
if delivered == nil then
  unrouted = math.min(redis.call('XLEN', stream), cap)
else
  unrouted = pending
  if unrouted < cap then
    unrouted = unrouted + #redis.call('XRANGE', stream, '(' .. delivered, '+', 'COUNT', cap - unrouted)
  end
end
if unrouted == 0 and keep > 0 and redis.call('XLEN', stream) > keep then
  redis.call('XTRIM', stream, 'MAXLEN', '~', keep)
end
return unrouted
