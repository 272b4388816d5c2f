-- Take one event out of the id index (its dedup check goes with it): KEYS[1] the index
-- bucket, ARGV[1] the event's id, ARGV[2] its source. Returns 1 if it was there, else 0.
--! include event_index
local value = redis.call('HGET', KEYS[1], ARGV[1])
local seq, _, first, last = index_find(value, ARGV[2])
if not seq then
  return 0
end
local rest = string.sub(value, 1, first - 1) .. string.sub(value, last + 1)
if rest == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], rest)
end
return 1
