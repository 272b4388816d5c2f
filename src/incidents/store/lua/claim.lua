-- Lease up to ARGV[3] due lanes until ARGV[2]; return for each: lane, token, n, then n pairs
-- of (delivery id, sequence) from the head of the lane (at most ARGV[4]).
-- Lanes whose lease ran out (their worker died or stalled) are due again first. Every lease
-- gets a fresh token (a fencing token): only its holder may renew or complete the lane, so a
-- worker that stalled past its lease cannot undo the work of the one that took the lane over.
-- Fairness: a subscription may hold at most ARGV[5] lanes of this worker at once (ARGV[6] is
-- JSON {subscription id: lanes it holds now}), so one slow or hanging sink cannot take every
-- slot. Of a subscription's due lanes over that cap, the first ARGV[5] stay where they are
-- (ready when a slot frees); the rest are put back by ARGV[7] seconds per further ARGV[5],
-- so a long backlog is not rescanned on every call and does not hide other subscriptions'
-- lanes behind it. At most ARGV[8] due lanes are looked at per call.
-- Lane keys are <ARGV[9]><subscription id>:<incident>.
-- The reply starts with when anything is next due (the earliest due lane or lease end left,
-- "" if none), so an idle worker can sleep until then instead of asking again and again.
-- KEYS: due lanes, leased lanes, lane -> token hash, token counter.
local due_key, leased_key, holders, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, lease_until, max_lanes, per_lane = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] - 1
local cap, held, defer = tonumber(ARGV[5]), cjson.decode(ARGV[6]), tonumber(ARGV[7])
local scan, prefix_len = tonumber(ARGV[8]), string.len(ARGV[9])
for _, lane in ipairs(redis.call('ZRANGEBYSCORE', leased_key, '-inf', now)) do
  redis.call('ZREM', leased_key, lane)
  redis.call('HDEL', holders, lane)
  if redis.call('EXISTS', lane) == 1 then
    redis.call('ZADD', due_key, now, lane)
  end
end
local out, taken, skipped = {}, 0, {}
local due = redis.call('ZRANGEBYSCORE', due_key, '-inf', now, 'LIMIT', 0, scan)
for _, lane in ipairs(due) do
  if taken >= max_lanes then break end
  local colon = string.find(lane, ':', prefix_len + 1, true)
  local sub = colon and string.sub(lane, prefix_len + 1, colon - 1) or lane
  local holding = held[sub] or 0
  if holding >= cap then
    local over = skipped[sub] or 0
    skipped[sub] = over + 1
    if over >= cap then
      redis.call('ZADD', due_key, tonumber(now) + defer * math.floor(over / cap), lane)
    end
  else
    redis.call('ZREM', due_key, lane)
    local head = redis.call('ZRANGE', lane, 0, per_lane, 'WITHSCORES')
    if #head > 0 then
      held[sub] = holding + 1
      taken = taken + 1
      local token = redis.call('INCR', counter)
      redis.call('ZADD', leased_key, lease_until, lane)
      redis.call('HSET', holders, lane, token)
      table.insert(out, lane)
      table.insert(out, token)
      table.insert(out, #head / 2)
      for _, x in ipairs(head) do table.insert(out, x) end
    end
  end
end
local next_due = ''
for _, key in ipairs({due_key, leased_key}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first > 0 and (next_due == '' or tonumber(first[2]) < tonumber(next_due)) then
    next_due = first[2]
  end
end
table.insert(out, 1, next_due)
return out
