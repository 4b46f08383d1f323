-- Claim a batch of fires of one shard, atomically with the lease check.
-- KEYS: lease, last-fired hash, job-version hash, trigger queue, open fires.
-- ARGV: holder|token, retention ms, claim key prefix, max early ms, then per
--   fire: job id, scheduled ms, kind ('s' scheduled, 't' trigger), job
--   version, attempt id, uncertain attempts (comma-separated, '' if none),
--   track ('1' for delivery at_least_once, else '').
-- A claim key holds holder|token|attempt. Per fire, in order:
--   1. a lost earlier attempt of this holder found in the claim key is taken
--      over: the key is rewritten with this attempt, so each lost attempt can
--      be taken over once, by one later attempt;
--   2. the job's version must be the caller's, else 2 (nothing written);
--   3. the fire must not be later than server time + max early, else 3;
--   4. the claim key is set NX; a scheduled fire must also be later than the
--      job's watermark (last claimed scheduled time), which it advances.
-- The batch's job versions and watermarks are read with one HMGET each and
-- the watermarks it moved are written with one HSET at the end; a watermark
-- moved by an earlier fire of the batch is seen by the later ones, so this
-- is the same as reading and writing them fire by fire.
-- A trigger that was claimed, or found claimed, leaves the trigger queue here
-- and nowhere else, so reading the queue never loses a trigger. A tracked
-- fire this call claims gets its open entry (field job@at, value
-- holder|token|1|kind), kept until a terminal record closes it or a
-- recovery rewrites it; an untracked one writes nothing more.
-- Returns {-1} if the lease is not ours, else {1, r1, r2, ...} with per fire:
--   1 claimed, 0 already claimed (or not after the watermark), 2 job changed,
--   3 not yet due by the server's clock.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1} end
local holder = string.match(ARGV[1], '^(.*)|%d+$')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local latest = now + tonumber(ARGV[4])
-- unpack() takes at most ~8000 values: read and write in chunks.
local CHUNK = 4000
local function hmget(key, fields)
  local out = {}
  for from = 1, #fields, CHUNK do
    local part = redis.call('HMGET', key, unpack(fields, from, math.min(from + CHUNK - 1, #fields)))
    for _, v in ipairs(part) do out[#out + 1] = v end
  end
  return out
end
local jobs = {}
for i = 5, #ARGV, 7 do jobs[#jobs + 1] = ARGV[i] end
local versions = hmget(KEYS[3], jobs)
local stored_last = hmget(KEYS[2], jobs)
local last = {}
for k, job in ipairs(jobs) do
  if last[job] == nil then last[job] = tonumber(stored_last[k]) or false end
end
local moved, moved_order = {}, {}
local out = {1}
local k = 0
for i = 5, #ARGV, 7 do
  k = k + 1
  local job, at, kind, version = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local attempt, uncertain, track = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local key = ARGV[3] .. job .. '@' .. at
  local value = ARGV[1] .. '|' .. attempt
  local code = -1
  if uncertain ~= '' then
    local cur = redis.call('GET', key)
    if cur then
      local h, a = string.match(cur, '^(.*)|%d+|(%d+)$')
      if h == holder and string.find(',' .. uncertain .. ',', ',' .. a .. ',', 1, true) then
        redis.call('SET', key, value, 'PX', ARGV[2])
        code = 1
      end
    end
  end
  if code == -1 then
    if versions[k] ~= version then
      code = 2
    elseif tonumber(at) > latest then
      code = 3
    else
      code = 0
      local fresh = true
      if kind == 's' then
        local l = last[job]
        fresh = (not l) or tonumber(at) > l
      end
      if fresh and redis.call('SET', key, value, 'NX', 'PX', ARGV[2]) then
        if kind == 's' then
          if moved[job] == nil then moved_order[#moved_order + 1] = job end
          moved[job] = at
          last[job] = tonumber(at)
        end
        code = 1
      end
    end
  end
  if code == 1 and track == '1' then
    redis.call('HSET', KEYS[5], job .. '@' .. at, ARGV[1] .. '|1|' .. kind)
  end
  if kind == 't' and (code == 0 or code == 1) then
    redis.call('LREM', KEYS[4], 1, job .. '|' .. at)
  end
  out[#out + 1] = code
end
local pairs_out = {}
for _, job in ipairs(moved_order) do
  pairs_out[#pairs_out + 1] = job
  pairs_out[#pairs_out + 1] = moved[job]
  if #pairs_out >= CHUNK then
    redis.call('HSET', KEYS[2], unpack(pairs_out))
    pairs_out = {}
  end
end
if #pairs_out > 0 then redis.call('HSET', KEYS[2], unpack(pairs_out)) end
return out
