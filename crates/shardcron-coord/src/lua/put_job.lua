-- Create or replace a job. KEYS: jobs hash, job-version hash, shard version counter.
-- ARGV: id, spec json, expected version ('' = any, '0' = must not exist).
-- The job's version is the shard counter after this write, so a version is
-- never reused, even after delete and re-create.
-- Returns {version, updated_ms} or {-1, current_version_or_0} on conflict.
local current = redis.call('HGET', KEYS[2], ARGV[1])
if ARGV[3] ~= '' and (current or '0') ~= ARGV[3] then
  return {-1, tonumber(current or '0')}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local version = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], ARGV[1], version)
redis.call('HSET', KEYS[1], ARGV[1],
  '{"version":' .. version .. ',"updated_ms":' .. now .. ',"spec":' .. ARGV[2] .. '}')
return {version, now}
