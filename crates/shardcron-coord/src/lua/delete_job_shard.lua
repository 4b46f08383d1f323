-- The shard step of a job removal on a Redis Cluster: delete_job.lua
-- without its namespace keys (job index, live weights).
-- KEYS: jobs hash, the old layout's version hash, shard version counter,
--   job-state hash, the old layout's trigger-instant hash, per-job weights
--   hash, trigger queue.
-- ARGV: id, expected version ('' = any), events channel, shard.
-- Decides and removes exactly what delete_job.lua does in the shard (see
-- there for the watermark kept when it is a claim ahead). The job's index
-- entry stays (the index may name absent jobs: listing skips them); the
-- caller sets the shard's live weight from the total returned, through
-- set_weight.lua with the shard version returned.
-- Returns {1, shard version, shard total weight} removed, {0} absent,
-- {-1} conflict.
migrate_job_state(KEYS[4], KEYS[2], KEYS[5])
local current = redis.call('HGET', KEYS[4], ARGV[1] .. '|v')
if not current then return {0} end
if ARGV[2] ~= '' and current ~= ARGV[2] then return {-1} end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1] .. '|v', ARGV[1] .. '|t')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w = tonumber(string.match(redis.call('HGET', KEYS[4], ARGV[1]) or '', '^(%-?%d+)'))
if w and w <= now then redis.call('HDEL', KEYS[4], ARGV[1]) end
local prefix = ARGV[1] .. '|'
for _, item in ipairs(redis.call('LRANGE', KEYS[7], 0, -1)) do
  if string.sub(item, 1, #prefix) == prefix and string.match(string.sub(item, #prefix + 1), '^%d+$') then
    redis.call('LREM', KEYS[7], 0, item)
  end
end
local version = redis.call('INCR', KEYS[3])
redis.call('HDEL', KEYS[6], ARGV[1])
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[6])) do total = total + tonumber(v) end
redis.call('PUBLISH', ARGV[3], 'jobs:' .. ARGV[4])
return {1, version, total}
