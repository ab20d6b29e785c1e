-- The observations of an entity with event hours in [ARGV[1], ARGV[2]): a correction needs them
-- to recompute a min, max or last it retracts.  KEYS[1] seen hash, KEYS[2] seen index.
-- Returns id1, record1, id2, record2, ...
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '(' .. ARGV[2])
local out = {}
for k = 1, #ids, 1000 do
  local chunk = {unpack(ids, k, math.min(k + 999, #ids))}
  local values = redis.call('HMGET', KEYS[1], unpack(chunk))
  for j = 1, #chunk do
    if values[j] then
      out[#out + 1] = chunk[j]
      out[#out + 1] = values[j]
    end
  end
end
return out
