-- Extend the leases a worker still holds. ARGV: lease end, then (lane, token) pairs; a lane
-- whose token changed (its lease ran out and it was taken over) is left alone.
-- KEYS: leased lanes, lane -> token hash. Returns how many leases were extended.
local leased_key, holders = KEYS[1], KEYS[2]
local renewed = 0
for i = 2, #ARGV, 2 do
  if redis.call('HGET', holders, ARGV[i]) == ARGV[i + 1] then
    redis.call('ZADD', leased_key, 'XX', ARGV[1], ARGV[i])
    renewed = renewed + 1
  end
end
return renewed
