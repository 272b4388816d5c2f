-- Remove a document only if it is still at the version the caller read (an event written
-- meanwhile keeps it): KEYS[1] the document's hash, KEYS[2..ARGV[3]+1] keys that go with it,
-- the rest indexes (sorted sets) its member ARGV[2] is taken out of. ARGV[1]: the version.
-- Returns 1 when removed, 0 when the document moved on (nothing is removed).
if (redis.call('HGET', KEYS[1], 'v') or '0') ~= ARGV[1] then
  return 0
end
local with = tonumber(ARGV[3])
for i = 1, with + 1 do
  redis.call('DEL', KEYS[i])
end
for i = with + 2, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[2])
end
return 1
