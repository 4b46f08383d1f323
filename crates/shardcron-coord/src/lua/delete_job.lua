-- Remove a job, its index entry, its queued triggers, its watermark and its
-- share of its shard's live weight, and announce it, in one atomic step.
-- KEYS: jobs hash, the old layout's version hash, shard version counter,
--   job-state hash (watermark `id`, version `id|v`, last trigger `id|t`),
--   job index, the old layout's trigger-instant hash, per-job weights hash,
--   live weights hash, live weights version counter, trigger queue.
-- A watermark past the server's time (a fire claimed ahead) stays: it may be
-- that fire's only record, and a job re-created under the same id before
-- that instant must not claim it again. Any other one goes: a re-created
-- job fires only after its creation, past every earlier instant.
-- ARGV: id, expected version ('' = any), events channel, shard.
-- Returns 1 removed, 0 absent, -1 conflict.
migrate_job_state(KEYS[4], KEYS[2], KEYS[6])
local current = redis.call('HGET', KEYS[4], ARGV[1] .. '|v')
if not current then return 0 end
if ARGV[2] ~= '' and current ~= ARGV[2] then return -1 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1] .. '|v', ARGV[1] .. '|t')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w = tonumber(string.match(redis.call('HGET', KEYS[4], ARGV[1]) or '', '^(%-?%d+)'))
if w and w <= now then redis.call('HDEL', KEYS[4], ARGV[1]) end
local prefix = ARGV[1] .. '|'
for _, item in ipairs(redis.call('LRANGE', KEYS[10], 0, -1)) do
  if string.sub(item, 1, #prefix) == prefix and string.match(string.sub(item, #prefix + 1), '^%d+$') then
    redis.call('LREM', KEYS[10], 0, item)
  end
end
redis.call('INCR', KEYS[3])
redis.call('ZREM', KEYS[5], ARGV[1])
local old_weight = tonumber(redis.call('HGET', KEYS[7], ARGV[1]) or '0')
if old_weight > 0 then
  redis.call('HDEL', KEYS[7], ARGV[1])
  local sum = redis.call('HINCRBY', KEYS[8], ARGV[4], string.format('%d', -old_weight))
  if sum <= 0 then redis.call('HDEL', KEYS[8], ARGV[4]) end
  redis.call('INCR', KEYS[9])
end
redis.call('PUBLISH', ARGV[3], 'jobs:' .. ARGV[4])
return 1
