-- Queue an extra fire of a job now. KEYS: job-version hash, trigger list, shard
-- version counter. ARGV: id, events channel, shard.
-- Returns the trigger's scheduled ms (server time), or -1 if the job is absent.
if not redis.call('HGET', KEYS[1], ARGV[1]) then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('RPUSH', KEYS[2], ARGV[1] .. '|' .. now)
redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[2], 'jobs:' .. ARGV[3])
return now
