-- Commit one entity's state together with the input offset that produced it, atomically.
-- KEYS[1]  the entity's state hash
-- KEYS[2]  the entity's seen hash (observation id -> "revision,hour")
-- KEYS[3]  the entity's seen index (sorted set: observation id scored by its event hour)
-- ARGV[1]  offset field ("off:<topic>:<partition>")   ARGV[2] offset (applied up to, inclusive)
-- ARGV[3]  TTL in seconds                               ARGV[4] seen horizon hour ("" for none):
--          ids of that hour or older are forgotten
-- ARGV[5]  d = number of state fields to delete         ARGV[6] p = number of field/value pairs to set
-- ARGV[7]  s = number of seen triples (id, "revision,hour", hour)
-- then the d names, the 2p field/value items, the 3s seen items.
-- Returns 1 if written, 0 if the state already holds this offset or a later one (a stale writer).
local applied = redis.call('HGET', KEYS[1], ARGV[1])
if applied and tonumber(applied) >= tonumber(ARGV[2]) then
  return 0
end
local d, p, s = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local i = 8
if d > 0 then
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, i + d - 1))
end
i = i + d
if p > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], unpack(ARGV, i, i + 2 * p - 1))
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
i = i + 2 * p
for j = 0, s - 1 do
  local id, value, hour = ARGV[i + 3 * j], ARGV[i + 3 * j + 1], ARGV[i + 3 * j + 2]
  redis.call('HSET', KEYS[2], id, value)
  redis.call('ZADD', KEYS[3], hour, id)
end
if ARGV[4] ~= '' then
  local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[4])
  for k = 1, #old, 1000 do
    local last = math.min(k + 999, #old)
    redis.call('HDEL', KEYS[2], unpack(old, k, last))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[4])
end
local ttl = tonumber(ARGV[3])
redis.call('EXPIRE', KEYS[1], ttl)
if s > 0 or ARGV[4] ~= '' then
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
return 1
