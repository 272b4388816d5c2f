-- Extend a lock's lease only if it is still held under the caller's token (KEYS[1], ARGV[1]),
-- by ARGV[2] milliseconds: 1 if extended, 0 if the lease ran out and someone else holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
