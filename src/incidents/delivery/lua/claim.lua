-- Lease up to ARGV[3] due lanes until ARGV[2]; return for each: lane, n, then n pairs of
-- (delivery id, sequence) from the head of the lane (at most ARGV[4]).
-- Lanes whose lease ran out (their worker died) are due again first.
local now, lease_until, max_lanes, per_lane = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] - 1
for _, lane in ipairs(redis.call('ZRANGEBYSCORE', 'incidents:lanes:leased', '-inf', now)) do
  redis.call('ZREM', 'incidents:lanes:leased', lane)
  if redis.call('EXISTS', lane) == 1 then
    redis.call('ZADD', 'incidents:lanes:due', now, lane)
  end
end
local out = {}
local due = redis.call('ZRANGEBYSCORE', 'incidents:lanes:due', '-inf', now, 'LIMIT', 0, max_lanes)
for _, lane in ipairs(due) do
  redis.call('ZREM', 'incidents:lanes:due', lane)
  local head = redis.call('ZRANGE', lane, 0, per_lane, 'WITHSCORES')
  if #head > 0 then
    redis.call('ZADD', 'incidents:lanes:leased', lease_until, lane)
    table.insert(out, lane)
    table.insert(out, #head / 2)
    for _, x in ipairs(head) do table.insert(out, x) end
  end
end
return out
