-- How many sources each of one roll-up's period hashes holds: the roll-ups' ledger check's lengths in one
-- call per roll-up (indicator|target) instead of one HLEN per period. Every key shares the roll-up's
-- hash slot (keys.rollup). Reads only.
-- KEYS  the roll-up's period hashes
-- Returns per key its HLEN (0 for a key that does not exist).
local lengths = {}
for k = 1, #KEYS do
  lengths[k] = redis.call('HLEN', KEYS[k])
end
return lengths
