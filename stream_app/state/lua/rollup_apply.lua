-- Apply one roll-up's (indicator|target) contributions, in order: each keeps its source's entry in its
-- period's hash unless the hash already holds that sequence or a later one (two writes of one source
-- and period end as they would one call each). Every key shares the roll-up's hash slot (keys.rollup).
-- KEYS  the roll-up's period hashes written (source -> "seq;aggregate")
-- ARGV  per write: its key's index in KEYS (from 1), source, seq, "seq;aggregate"; then the TTL in seconds
-- Returns per write 1 if written, 0 if the hash holds this sequence or a later one, or the type of its
-- key when that is not a hash: the write is refused (its key is checked before any write), the others
-- are applied, as they were one call per write.
local wrong = {}
for k = 1, #KEYS do
  local kind = redis.call('TYPE', KEYS[k])['ok']
  if kind ~= 'none' and kind ~= 'hash' then
    wrong[k] = kind
  end
end
local ttl = tonumber(ARGV[#ARGV])
local replies = {}
local written = {}
for w = 1, (#ARGV - 1) / 4 do
  local at = (w - 1) * 4
  local k = tonumber(ARGV[at + 1])
  if wrong[k] then
    replies[w] = wrong[k]
  else
    replies[w] = 1
    local stored = redis.call('HGET', KEYS[k], ARGV[at + 2])
    if stored then
      local seq = tonumber(string.match(stored, '^(-?%d+);'))
      if seq and seq >= tonumber(ARGV[at + 3]) then
        replies[w] = 0
      end
    end
    if replies[w] == 1 then
      redis.call('HSET', KEYS[k], ARGV[at + 2], ARGV[at + 4])
      written[k] = true
    end
  end
end
for k = 1, #KEYS do
  if written[k] then
    redis.call('EXPIRE', KEYS[k], ttl)
  end
end
return replies
