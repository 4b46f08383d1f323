-- Create or replace a job, index it, update its shard's live weight and
-- announce it, in one atomic step.
-- KEYS: jobs hash, job-state hash (the version is field `id|v`), shard
--   version counter, job index, per-job weights hash, live weights hash,
--   live weights version counter, and the two hashes of the old layout
--   (see the prelude); then the job's source shard, where it is now when
--   its placement changes (else the target's again): jobs hash, job-state
--   hash, version counter, per-job weights hash, trigger queue, the two
--   hashes of the old layout; then the target's trigger queue; then the
--   jobs hashes of the job's three candidate shards (one per placement).
-- ARGV: id, spec json, expected version ('' = any, '0' = must not exist),
--   paused ('1' or '0'), events channel, shard, job weight (load units),
--   source shard ('' = the job does not change shards).
-- A job is in at most one of its candidate shards. The caller found it in
-- the source shard (or in none, or in the target); if that no longer holds
-- (another writer moved, created or deleted it meanwhile) nothing is
-- written and {-2} tells the caller to look again.
-- A placement change moves the job in this one step: it leaves the source
-- shard (whose version moves, so its owner reloads and claims nothing more
-- of it there) with its watermark and claim record, its trigger instant and
-- its queued triggers, which the target shard takes over; its weight leaves
-- the source's live weight. Carrying the watermark is what keeps a fire the
-- old owner claimed from being claimed again in the new shard.
-- The job's version is the shard counter after this write, so a version is
-- never reused, even after delete and re-create. `active_since_ms` is the
-- write time on creation and when a paused job is resumed, and is kept on
-- every other edit. The shard's live weight changes by the job's new weight
-- minus the one stored for it, so the sum stays exact; its version moves
-- only when a weight did.
-- Returns {version, updated_ms, active_since_ms} or {-1, current_version_or_0}.
migrate_job_state(KEYS[2], KEYS[8], KEYS[9])
local moving = ARGV[8] ~= ''
local found = nil
for i = 18, 20 do
  if redis.call('HEXISTS', KEYS[i], ARGV[1]) == 1 then found = KEYS[i] end
end
if moving then
  if found ~= KEYS[10] then return {-2} end
elseif found and found ~= KEYS[1] then
  return {-2}
end
local vfield = ARGV[1] .. '|v'
local state = KEYS[2]
if moving then
  migrate_job_state(KEYS[11], KEYS[15], KEYS[16])
  state = KEYS[11]
end
local current = redis.call('HGET', state, vfield)
if ARGV[3] ~= '' and (current or '0') ~= ARGV[3] then
  return {-1, tonumber(current or '0')}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = now
local prev_raw = redis.call('HGET', moving and KEYS[10] or KEYS[1], ARGV[1])
if moving then
  local id = ARGV[1]
  local src_state = KEYS[11]
  local mark = redis.call('HGET', src_state, id)
  local trig = redis.call('HGET', src_state, id .. '|t')
  redis.call('HDEL', KEYS[10], id)
  redis.call('HDEL', src_state, id, id .. '|v', id .. '|t')
  if mark then
    local at = tonumber(string.match(mark, '^(%-?%d+)'))
    local kept = tonumber(string.match(redis.call('HGET', KEYS[2], id) or '', '^(%-?%d+)'))
    if at and (not kept or kept < at) then redis.call('HSET', KEYS[2], id, mark) end
  end
  if trig then
    local t_at = tonumber(trig)
    if t_at > tonumber(redis.call('HGET', KEYS[2], id .. '|t') or '0') then
      redis.call('HSET', KEYS[2], id .. '|t', trig)
    end
    if t_at > tonumber(redis.call('HGET', KEYS[2], '|t') or '0') then
      redis.call('HSET', KEYS[2], '|t', trig)
    end
  end
  local prefix = id .. '|'
  for _, item in ipairs(redis.call('LRANGE', KEYS[14], 0, -1)) do
    if string.sub(item, 1, #prefix) == prefix and string.match(string.sub(item, #prefix + 1), '^%d+$') then
      redis.call('LREM', KEYS[14], 0, item)
      redis.call('RPUSH', KEYS[17], item)
    end
  end
  redis.call('INCR', KEYS[12])
  local w = tonumber(redis.call('HGET', KEYS[13], id) or '0')
  if w > 0 then
    redis.call('HDEL', KEYS[13], id)
    local sum = redis.call('HINCRBY', KEYS[6], ARGV[8], string.format('%d', -w))
    if sum <= 0 then redis.call('HDEL', KEYS[6], ARGV[8]) end
    redis.call('INCR', KEYS[7])
  end
  redis.call('PUBLISH', ARGV[5], 'jobs:' .. ARGV[8])
end
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
