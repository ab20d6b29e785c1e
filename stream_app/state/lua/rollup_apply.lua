-- Keep a source's contribution to a roll-up period unless a newer one is already there.
-- KEYS[1] the roll-up period hash (source -> "seq;aggregate")
-- ARGV[1] source   ARGV[2] seq   ARGV[3] "seq;aggregate"   ARGV[4] TTL in seconds
-- Returns 1 if written, 0 if the hash holds this sequence or a later one.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. kind .. ', not a hash')
end
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then
  local seq = tonumber(string.match(stored, '^(-?%d+);'))
  if seq and seq >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
