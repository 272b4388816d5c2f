-- Lease up to ARGV[3] due lanes until ARGV[2]; return for each: lane, token, n, then n pairs
-- of (delivery id, sequence) from the head of the lane (at most ARGV[4]).
-- Lanes whose lease ran out (their worker died or stalled) are due again first. Every lease
-- gets a fresh token (a fencing token): only its holder may renew or complete the lane, so a
-- worker that stalled past its lease cannot undo the work of the one that took the lane over.
-- KEYS: due lanes, leased lanes, lane -> token hash, token counter.
local due_key, leased_key, holders, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, lease_until, max_lanes, per_lane = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] - 1
for _, lane in ipairs(redis.call('ZRANGEBYSCORE', leased_key, '-inf', now)) do
  redis.call('ZREM', leased_key, lane)
  redis.call('HDEL', holders, lane)
  if redis.call('EXISTS', lane) == 1 then
    redis.call('ZADD', due_key, now, lane)
  end
end
local out = {}
local due = redis.call('ZRANGEBYSCORE', due_key, '-inf', now, 'LIMIT', 0, max_lanes)
for _, lane in ipairs(due) do
  redis.call('ZREM', due_key, lane)
  local head = redis.call('ZRANGE', lane, 0, per_lane, 'WITHSCORES')
  if #head > 0 then
    local token = redis.call('INCR', counter)
    redis.call('ZADD', leased_key, lease_until, lane)
    redis.call('HSET', holders, lane, token)
    table.insert(out, lane)
    table.insert(out, token)
    table.insert(out, #head / 2)
    for _, x in ipairs(head) do table.insert(out, x) end
  end
end
return out
