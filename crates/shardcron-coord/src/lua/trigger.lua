-- Queue an extra fire of a job now. KEYS: the old layout's version hash,
-- trigger queue, shard version counter, the old layout's trigger-instant
-- hash, job-state hash (watermark `id`, version `id|v`, last trigger
-- `id|t`). ARGV: id, events channel, shard.
-- The trigger's instant is the server time in ms, moved past the job's
-- previous trigger if that had the same (or a later) ms, so two triggers of
-- one job never share a fire id, and past the job's watermark (a scheduled
-- fire claimed ahead), so it never shares the ms of a scheduled fire already
-- claimed: that fire's record may be the watermark alone, which a later
-- scheduled claim can move on (see claim.lua). A scheduled fire claimed
-- later at a trigger's ms finds the trigger through the job's `id|t` field
-- and its key; the shard's `|t` field keeps the latest trigger instant of
-- any of its jobs, so a claim batch whose fires are all later than it need
-- not read the jobs' own.
-- Returns the trigger's scheduled ms, or -1 if the job is absent.
migrate_job_state(KEYS[5], KEYS[1], KEYS[4])
if not redis.call('HGET', KEYS[5], ARGV[1] .. '|v') then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prev = tonumber(redis.call('HGET', KEYS[5], ARGV[1] .. '|t') or '0')
if prev >= now then now = prev + 1 end
local w = tonumber(string.match(redis.call('HGET', KEYS[5], ARGV[1]) or '', '^(%-?%d+)'))
if w and w >= now then now = w + 1 end
local at = string.format('%d', now)
local shard_latest = tonumber(redis.call('HGET', KEYS[5], '|t') or '0')
if now > shard_latest then
  redis.call('HSET', KEYS[5], ARGV[1] .. '|t', at, '|t', at)
else
  redis.call('HSET', KEYS[5], ARGV[1] .. '|t', at)
end
redis.call('RPUSH', KEYS[2], ARGV[1] .. '|' .. at)
redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[2], 'jobs:' .. ARGV[3])
return now
