-- Finish a leased lane: drop the finished deliveries (ARGV[3..]) and, if any remain, make the
-- lane due at ARGV[2] (now, or the head's retry time).
-- ARGV: lane, due time, finished ids...
local lane, due = ARGV[1], ARGV[2]
for i = 3, #ARGV do redis.call('ZREM', lane, ARGV[i]) end
redis.call('ZREM', 'incidents:lanes:leased', lane)
if redis.call('EXISTS', lane) == 1 then
  redis.call('ZADD', 'incidents:lanes:due', due, lane)
end
return 1
