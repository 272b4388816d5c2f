-- Where a stored event is kept (store/keys.py: ``event_hash``): the hash of its bucket of
-- sequences, `prefix` followed by the bucket's number. Included (--! include event_keys) by the
-- scripts that store events.
local function event_hash(prefix, size, seq)
  return prefix .. string.format('%d', math.floor(seq / size))
end
