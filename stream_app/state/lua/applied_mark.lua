-- Raise a partition's applied mark: every record of its partition up to ARGV[1] (inclusive) has been
-- processed into the state (applied, skipped as a duplicate, or dead-lettered); and write the ledger
-- entries of the entities the batch committed (stream_app/state/ledger.py), which the mark vouches for.
-- KEYS[1] the mark   KEYS[2] the rebuild flag   KEYS[3] the partition's ledger (one hash tag)
-- ARGV[1] the batch's last offset   ARGV[2] the floor: the mark the state guard admitted the batch on
--         (its first offset - 1), or "" for a partition read from the start of its log
-- ARGV[3..] ledger field/value pairs (entity, "offset;ms")
-- Compare-and-set: the mark must still reach the floor. A Redis that lost its state while the batch was
-- in flight (restarted empty, flushed, failed over to a stale replica) has no mark, or a lower one:
-- raising it would cover the loss, so the script refuses with STATELOST. Never lowers a mark.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'string' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. kind .. ', not a string')
end
local ledger = redis.call('TYPE', KEYS[3])['ok']
if ledger ~= 'none' and ledger ~= 'hash' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[3] .. ' holds a ' .. ledger .. ', not a hash')
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('STATELOST the state is being rebuilt')
end
local stored = redis.call('GET', KEYS[1])
if ARGV[2] ~= '' and (not stored or tonumber(stored) < tonumber(ARGV[2])) then
  return redis.error_reply('STATELOST mark ' .. tostring(stored) .. ' below ' .. ARGV[2])
end
for k = 3, #ARGV, 1000 do  -- an even step: pairs stay whole
  redis.call('HSET', KEYS[3], unpack(ARGV, k, math.min(k + 999, #ARGV)))
end
local current = tonumber(stored or '-1')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
