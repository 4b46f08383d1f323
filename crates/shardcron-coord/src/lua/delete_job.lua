-- Remove a job. KEYS: jobs hash, job-version hash, shard version counter, last-fired hash.
-- ARGV: id, expected version ('' = any). Returns 1 removed, 0 absent, -1 conflict.
local current = redis.call('HGET', KEYS[2], ARGV[1])
if not current then return 0 end
if ARGV[2] ~= '' and current ~= ARGV[2] then return -1 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
