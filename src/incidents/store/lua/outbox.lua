-- Whether the retained outbox stream holds anything the router has not routed (read but
-- not acknowledged, or not read yet), and, when it holds nothing unrouted, trim it to about
-- ARGV[2] entries (0: do not trim). Routed entries are kept for readers that tail recent
-- events; an entry not yet routed is never trimmed, however long the backlog grows.
-- KEYS[1]: the stream; ARGV[1]: the router's consumer group. Returns 1 (backlog) or 0.
local stream, group, keep = KEYS[1], ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', stream) == 0 then
  return 0
end
local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
if #last == 0 then
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
if delivered ~= last[1][1] or pending > 0 then
  return 1
end
if keep > 0 and redis.call('XLEN', stream) > keep then
  redis.call('XTRIM', stream, 'MAXLEN', '~', keep)
end
return 0
