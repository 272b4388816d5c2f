-- Restore a versioned document (an incident, an alert) read from an export or the archive:
-- written only when Redis holds an older version of it, or none. KEYS[1]: its hash;
-- ARGV: its version, its JSON. Returns 1 when written, 0 when Redis already has it or newer.
if tonumber(redis.call('HGET', KEYS[1], 'v') or '0') >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'j', ARGV[2])
return 1
