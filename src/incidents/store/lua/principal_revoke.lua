-- Revoke a principal: its hash, its token key, its name (if still its own) and set membership.
-- KEYS: the principal's hash, name -> id hash, the set of principals.
-- ARGV: token key prefix, id. Returns 1, or 0 when there was no such principal.
local fields = redis.call('HMGET', KEYS[1], 'token', 'name')
if not fields[1] and not fields[2] then return 0 end
redis.call('DEL', KEYS[1])
if fields[1] then redis.call('DEL', ARGV[1] .. fields[1]) end
if fields[2] and redis.call('HGET', KEYS[2], fields[2]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], fields[2])
end
redis.call('SREM', KEYS[3], ARGV[2])
return 1
