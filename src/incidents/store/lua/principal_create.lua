-- Create a principal unless its name is taken: returns the existing id when it is, else nil.
-- KEYS: name -> id hash, the principal's hash, its token key, the set of principals.
-- ARGV: name, id, then the principal's fields (k, v, ...).
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return redis.call('HGET', KEYS[1], ARGV[1])
end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('SET', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
return false
