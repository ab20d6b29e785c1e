-- Commit one entity's state together with the input offset that produced it, atomically.
-- KEYS[1]  the entity's state hash            KEYS[2]  its seen hash (observation id -> record)
-- KEYS[3]  its seen index (sorted set: observation id scored by its event hour)
-- KEYS[4]  its periods hash ("series|label" -> aggregate)
-- KEYS[5]  its periods index (sorted set: "series|label" scored by the period's end, epoch ms)
-- ARGV[1]  offset field ("off:<topic>:<partition>")   ARGV[2] offset (applied up to, inclusive)
-- ARGV[3]  TTL in seconds
-- ARGV[4]  retention start, epoch ms ("" for none): observations before it and periods ending
--          at or before it are forgotten
-- ARGV[5]  d = state fields to delete    ARGV[6] p = state field/value pairs to set
-- ARGV[7]  s = seen triples (id, record, hour)    ARGV[8] q = period triples (field, aggregate or "" to
--          delete, period end)
-- then the d names, the 2p field/value items, the 3s seen items, the 3q period items.
-- Returns 1 if written, 0 if the state already holds this offset or a later one (a stale writer).
-- Redis does not roll a script back when a command fails half-way, so every key's type is checked
-- before the first write: a key of the wrong type fails the commit with nothing written.
local expected = {'hash', 'hash', 'zset', 'hash', 'zset'}
for k = 1, 5 do
  local kind = redis.call('TYPE', KEYS[k])['ok']
  if kind ~= 'none' and kind ~= expected[k] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[k] .. ' holds a ' .. kind .. ', not a ' .. expected[k])
  end
end
local applied = redis.call('HGET', KEYS[1], ARGV[1])
if applied and tonumber(applied) >= tonumber(ARGV[2]) then
  return 0
end
local d, p, s, q = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local i = 9
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
i = i + 3 * s
for j = 0, q - 1 do
  local name, value, ends = ARGV[i + 3 * j], ARGV[i + 3 * j + 1], ARGV[i + 3 * j + 2]
  if value == '' then
    redis.call('HDEL', KEYS[4], name)
    redis.call('ZREM', KEYS[5], name)
  else
    redis.call('HSET', KEYS[4], name, value)
    redis.call('ZADD', KEYS[5], ends, name)
  end
end
local function forget(hash, index, upto)
  local old = redis.call('ZRANGEBYSCORE', index, '-inf', upto)
  for k = 1, #old, 1000 do
    redis.call('HDEL', hash, unpack(old, k, math.min(k + 999, #old)))
  end
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', index, '-inf', upto)
  end
end
if ARGV[4] ~= '' then
  local start = tonumber(ARGV[4])
  forget(KEYS[2], KEYS[3], '(' .. tostring(math.floor(start / 3600000)))
  forget(KEYS[4], KEYS[5], tostring(start))
end
local ttl = tonumber(ARGV[3])
for k = 1, 5 do
  redis.call('EXPIRE', KEYS[k], ttl)
end
return 1
