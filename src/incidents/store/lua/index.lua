-- Move one subscription in the routing index from its old types to its new ones.
-- ARGV: id, key prefix ("incidents:"), old types JSON, new types JSON (null = not indexed).
-- KEYS[1]: the "every type" set (of that prefix), named so that a Redis Cluster runs the
-- script on the slot of the global keys, which every key it touches shares.
-- A type ending in '*' is a prefix; an empty list means every type.
local id, p = ARGV[1], ARGV[2]
local old, new = cjson.decode(ARGV[3]), cjson.decode(ARGV[4])

local function each(types, exact, prefix, any)
  if types == cjson.null then return end
  if #types == 0 then any() return end
  for _, t in ipairs(types) do
    if string.sub(t, -1) == '*' then prefix(string.sub(t, 1, -2)) else exact(t) end
  end
end

each(old,
  function(t) redis.call('SREM', p .. 'route:type:' .. t, id) end,
  function(x)
    redis.call('SREM', p .. 'route:prefix:' .. x, id)
    if redis.call('SCARD', p .. 'route:prefix:' .. x) == 0 then
      redis.call('SREM', p .. 'route:prefixes', x)
    end
  end,
  function() redis.call('SREM', p .. 'route:any', id) end)
each(new,
  function(t) redis.call('SADD', p .. 'route:type:' .. t, id) end,
  function(x)
    redis.call('SADD', p .. 'route:prefix:' .. x, id)
    redis.call('SADD', p .. 'route:prefixes', x)
  end,
  function() redis.call('SADD', p .. 'route:any', id) end)
return redis.call('INCR', p .. 'subs:version')
