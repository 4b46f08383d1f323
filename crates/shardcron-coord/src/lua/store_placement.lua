-- Store the next placement if the stored one is still the one the caller
-- started from (compare-and-set on its version; 0 = none stored yet).
-- KEYS: placement hash (ver, map). ARGV: expected version, placement JSON.
-- Returns {1, new_version} when stored, {0, current_version} otherwise.
local current = tonumber(redis.call('HGET', KEYS[1], 'ver') or '0')
if current ~= tonumber(ARGV[1]) then return {0, current} end
redis.call('HSET', KEYS[1], 'ver', current + 1, 'map', ARGV[2])
return {1, current + 1}
