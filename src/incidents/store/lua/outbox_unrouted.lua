-- How many outbox entries the router has not routed yet: read but not acknowledged, plus
-- those after the last one it read (counted up to ARGV[2]). The stream also keeps routed
-- entries (the retained event stream), so its length is not the backlog.
-- KEYS[1]: the stream; ARGV[1]: the router's consumer group; ARGV[2]: the most to count.
local stream, group, cap = KEYS[1], ARGV[1], tonumber(ARGV[2])
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
if delivered == nil then
  return math.min(redis.call('XLEN', stream), cap)
end
local unread = redis.call('XRANGE', stream, '(' .. delivered, '+', 'COUNT', cap)
return pending + #unread
