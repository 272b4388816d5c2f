-- Release a lock only if it is still held under the caller's token (KEYS[1], ARGV[1]):
-- a holder whose lease ran out must not release the lock its successor now holds.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
