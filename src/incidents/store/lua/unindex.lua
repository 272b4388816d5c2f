-- Take one event out of the id index (its dedup check goes with it): KEYS[1] the index
-- bucket, ARGV[1] the event's id, ARGV[2] its source. Returns 1 if it was there, else 0.
--! include event_index
local bucket, id, source = KEYS[1], ARGV[1], ARGV[2]
local count = id .. '\n'
local first = redis.call('HGET', bucket, id)
if first and first ~= '-' then
  local _, src = index_parse(first)
  if src == source then
    if tonumber(redis.call('HGET', bucket, count) or '0') > 0 then
      redis.call('HSET', bucket, id, '-') -- the others stay findable
    else
      redis.call('HDEL', bucket, id)
    end
    return 1
  end
end
if redis.call('HDEL', bucket, id .. '\n' .. source) == 1 then
  if redis.call('HINCRBY', bucket, count, -1) <= 0 then
    redis.call('HDEL', bucket, count)
    if first == '-' then
      redis.call('HDEL', bucket, id)
    end
  end
  return 1
end
return 0
