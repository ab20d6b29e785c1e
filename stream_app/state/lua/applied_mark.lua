-- Raise a partition's applied mark: every record of KEYS[1]'s partition up to ARGV[1] (inclusive) has
-- been processed into the state (applied, skipped as a duplicate, or dead-lettered). Never lowers it:
-- a batch redelivered after a crash carries offsets the mark already covers.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'string' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. kind .. ', not a string')
end
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
