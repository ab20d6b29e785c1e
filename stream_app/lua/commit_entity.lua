-- Commit one entity's state together with the input offset that produced it, atomically.
-- KEYS[1]  the entity's state hash
-- ARGV[1]  offset field ("off:<topic>:<partition>")   ARGV[2] offset (applied up to, inclusive)
-- ARGV[3]  TTL in seconds                               ARGV[4] n = number of fields to delete
-- ARGV[5 .. 4+n]  fields to delete;  ARGV[5+n ..] field, value pairs to set
-- Returns 1 if written, 0 if the hash already holds this offset or a later one (a stale writer).
local applied = redis.call('HGET', KEYS[1], ARGV[1])
if applied and tonumber(applied) >= tonumber(ARGV[2]) then
  return 0
end
local n = tonumber(ARGV[4])
if n > 0 then
  redis.call('HDEL', KEYS[1], unpack(ARGV, 5, 4 + n))
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], unpack(ARGV, 5 + n))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
