-- Store the namespace's ring settings once; later nodes must agree.
-- KEYS: config hash. ARGV: field1, value1, ... Returns {} if consistent, else
-- {field, stored, given} of the first mismatch.
for i = 1, #ARGV, 2 do
  local stored = redis.call('HGET', KEYS[1], ARGV[i])
  if stored and stored ~= ARGV[i + 1] then return {ARGV[i], stored, ARGV[i + 1]} end
end
for i = 1, #ARGV, 2 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
return {}
