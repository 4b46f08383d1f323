-- The shard step of a job write on a Redis Cluster: put_job.lua without its
-- namespace keys (job index, live weights), which live in another slot.
-- KEYS: jobs hash, job-state hash (the version is field `id|v`), shard
--   version counter, per-job weights hash, and the two hashes of the old
--   layout (see the prelude).
-- ARGV: id, spec json, expected version ('' = any, '0' = must not exist),
--   paused ('1' or '0'), events channel, shard, job weight (load units).
-- Everything put_job.lua decides is decided here, in one atomic step of the
-- shard's slot. The caller indexed the job before (the index may name jobs
-- that do not exist, never miss one that does) and sets the shard's live
-- weight after, from the total returned here, through set_weight.lua,
-- which applies a shard's totals in the order of the shard versions
-- returned with them (see docs/ARCHITECTURE.md, "Redis Cluster").
-- Returns {version, updated_ms, active_since_ms, shard total weight} or
-- {-1, current_version_or_0}.
migrate_job_state(KEYS[2], KEYS[5], KEYS[6])
local vfield = ARGV[1] .. '|v'
local current = redis.call('HGET', KEYS[2], vfield)
if ARGV[3] ~= '' and (current or '0') ~= ARGV[3] then
  return {-1, tonumber(current or '0')}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = now
local prev_raw = redis.call('HGET', KEYS[1], ARGV[1])
if prev_raw then
  local ok, prev = pcall(cjson.decode, prev_raw)
  if ok and type(prev) == 'table' then
    local was_paused = type(prev.spec) == 'table' and prev.spec.paused == true
    if not (was_paused and ARGV[4] == '0') then
      local kept = tonumber(prev.active_since_ms) or 0
      if kept <= 0 then kept = tonumber(prev.updated_ms) or now end
      since = kept
    end
  end
end
local version = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], vfield, version)
redis.call('HSET', KEYS[1], ARGV[1], '{"version":' .. version .. ',"updated_ms":' ..
  string.format('%d', now) .. ',"active_since_ms":' .. string.format('%d', since) ..
  ',"spec":' .. ARGV[2] .. '}')
if tonumber(ARGV[7]) > 0 then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[7])
else
  redis.call('HDEL', KEYS[4], ARGV[1])
end
local total = 0
for _, w in ipairs(redis.call('HVALS', KEYS[4])) do total = total + tonumber(w) end
redis.call('PUBLISH', ARGV[5], 'jobs:' .. ARGV[6])
return {version, now, since, total}
