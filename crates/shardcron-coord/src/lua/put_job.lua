-- Create or replace a job, index it, update its shard's live weight and
-- announce it, in one atomic step.
-- KEYS: jobs hash, job-state hash (the version is field `id|v`), shard
--   version counter, job index, per-job weights hash, live weights hash,
--   live weights version counter, and the two hashes of the old layout
--   (see the prelude).
-- ARGV: id, spec json, expected version ('' = any, '0' = must not exist),
--   paused ('1' or '0'), events channel, shard, job weight (load units).
-- The job's version is the shard counter after this write, so a version is
-- never reused, even after delete and re-create. `active_since_ms` is the
-- write time on creation and when a paused job is resumed, and is kept on
-- every other edit. The shard's live weight changes by the job's new weight
-- minus the one stored for it, so the sum stays exact; its version moves
-- only when a weight did.
-- Returns {version, updated_ms, active_since_ms} or {-1, current_version_or_0}.
migrate_job_state(KEYS[2], KEYS[8], KEYS[9])
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
redis.call('ZADD', KEYS[4], 0, ARGV[1])
local new_weight = tonumber(ARGV[7])
local old_weight = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
if new_weight ~= old_weight then
  if new_weight > 0 then
    redis.call('HSET', KEYS[5], ARGV[1], ARGV[7])
  else
    redis.call('HDEL', KEYS[5], ARGV[1])
  end
  local sum = redis.call('HINCRBY', KEYS[6], ARGV[6], string.format('%d', new_weight - old_weight))
  if sum <= 0 then redis.call('HDEL', KEYS[6], ARGV[6]) end
  redis.call('INCR', KEYS[7])
end
redis.call('PUBLISH', ARGV[5], 'jobs:' .. ARGV[6])
return {version, now, since}
