-- Finish a leased lane in one step, if the caller still holds its lease. ARGV[1] is JSON:
--   {"lane", "token", "due", "finished": [delivery ids], "records": [{"key", "id", "value"}],
--    "log": [{"key", "entry"}], "log_length": n, "dead": [{"id", "at"}],
--    "healthy": [subscription keys], "dropped": [{"key", "id"}],
--    "states": [{"key", "field", "value"}],
--    "metric_outcomes_key", "metric_outcomes": [fields], "metric_latency_key",
--    "metric_buckets": [fields], "metric_sums": [field, seconds, ...]}
-- Writes the records, the attempt log (trimmed), dead letters, the channel state of each
-- (subscription, incident) worked, clears failing_since of the healthy subscriptions,
-- drops the finished deliveries from the lane and makes it due at
-- "due" if anything is left. Returns {1}, or {0} when the lease was lost (the lane was taken
-- over after its lease ran out): then nothing is written and the new holder works the
-- lane's head again (at-least-once, in order).
-- With "more" > 0 (its holder goes on working it) and anything left in the lane, the lease
-- is kept instead, extended to "lease_until", and the next "more" deliveries of the lane's
-- head returned with what working them needs, read in this same step (no round trip of its
-- own): {2, {id, sequence, ...}, the value of "version_key", of "paused_key", field
-- "state_field" of hash "state_key", the value of "silences_key", then each delivery's
-- record (field id of the hash "record_prefix" .. floor(sequence / "bucket_size"); false when
-- gone)}. Events queued while a lane is leased need no claim.
-- Every key is of the lane's partition, except "healthy", "version_key", "paused_key" and
-- "silences_key", global keys given only on one Redis with one partition (else the caller
-- writes and reads them beside this step, and their values here are false).
-- KEYS: due lanes, leased lanes, lane -> token hash, dead letters.
local due_key, leased_key, holders, dead_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local r = cjson.decode(ARGV[1])
local function get(key)
  if key == nil then return false end
  return redis.call('GET', key)
end
if redis.call('HGET', holders, r.lane) ~= r.token then
  return {0}
end
for _, rec in ipairs(r.records) do
  redis.call('HSET', rec.key, rec.id, rec.value)
end
local logged = {}
for _, e in ipairs(r.log) do
  redis.call('LPUSH', e.key, e.entry)
  logged[e.key] = true
end
for key in pairs(logged) do
  redis.call('LTRIM', key, 0, r.log_length - 1)
end
-- Delivery metrics (delivery_metrics.py): outcome counts, latency buckets and sums.
for _, f in ipairs(r.metric_outcomes or {}) do
  redis.call('HINCRBY', r.metric_outcomes_key, f, 1)
end
for _, f in ipairs(r.metric_buckets or {}) do
  redis.call('HINCRBY', r.metric_latency_key, f, 1)
end
local sums = r.metric_sums or {}
for j = 1, #sums, 2 do
  redis.call('HINCRBYFLOAT', r.metric_latency_key, sums[j], sums[j + 1])
end
for _, d in ipairs(r.dead) do
  redis.call('ZADD', dead_key, d.at, d.id)
end
for _, key in ipairs(r.healthy) do
  redis.call('HDEL', key, 'failing_since')
end
for _, s in ipairs(r.states or {}) do
  redis.call('HSET', s.key, s.field, s.value)
  if s.ref_fields and #s.ref_fields > 0 then
    redis.call('HSET', s.refs, unpack(s.ref_fields))
  end
end
for _, d in ipairs(r.dropped) do
  redis.call('HDEL', d.key, d.id)
end
for _, id in ipairs(r.finished) do
  redis.call('ZREM', r.lane, id)
end
local more = tonumber(r.more or 0)
if more > 0 then
  local head = redis.call('ZRANGE', r.lane, 0, more - 1, 'WITHSCORES')
  if #head > 0 then
    redis.call('ZADD', leased_key, r.lease_until, r.lane)
    local out = {2, head, get(r.version_key), get(r.paused_key),
                 redis.call('HGET', r.state_key, r.state_field), get(r.silences_key)}
    for j = 1, #head, 2 do
      local bucket = math.floor(tonumber(head[j + 1]) / r.bucket_size)
      table.insert(out, redis.call('HGET', r.record_prefix .. bucket, head[j]))
    end
    return out
  end
end
redis.call('ZREM', leased_key, r.lane)
redis.call('HDEL', holders, r.lane)
if redis.call('EXISTS', r.lane) == 1 then
  redis.call('ZADD', due_key, r.due, r.lane)
end
return {1}
