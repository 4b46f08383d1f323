-- Claim a batch of fires of one shard, atomically with the lease check.
-- KEYS: lease, watermark hash, job-version hash, trigger queue, open fires,
--   trigger-instant hash.
-- ARGV: holder|token, retention ms, claim key prefix, max early ms, then per
--   fire: job id, scheduled ms, kind ('s' scheduled, 't' trigger), job
--   version, attempt id, uncertain attempts (comma-separated, '' if none),
--   track ('1' for delivery at_least_once, else '').
--
-- The claim record of a fire is holder|token|attempt. It lives in the
-- fire's claim key (prefix .. job@ms) when that exists, else in the job's
-- watermark (field job: `ms|holder|token|attempt`, the last scheduled fire
-- claimed) when the watermark is at that ms; a key always wins. A scheduled
-- fire is claimed by moving the watermark, with no key of its own; a key is
-- written only where the watermark cannot hold the record:
--   * a trigger's claim (set NX, as before);
--   * the record a moved watermark held, when the holder moving it is not
--     the one that wrote it, or wrote it earlier in this same call (set NX:
--     an existing key is the record already). A holder's other records are
--     dropped: its node learned their outcome, because it never claims a
--     later fire of a job in a call without the retry of an unresolved one
--     ahead of it (see docs/ARCHITECTURE.md, "The watermark as the claim");
--   * a scheduled fire claimed at or before the job's latest trigger
--     instant (that trigger may share its ms: the key makes them one fire).
-- Per fire, in order:
--   1. a lost earlier attempt of this holder found in the fire's record is
--      taken over: the record is rewritten with this attempt, so each lost
--      attempt can be taken over once, by one later attempt;
--   2. the job's version must be the caller's, else 2 (nothing written);
--   3. a scheduled fire must not be later than server time + max early,
--      else 3 (a trigger's ms is the store's own: see trigger.lua);
--   4. a scheduled fire must be later than the watermark and, if a trigger
--      of the job is at or after it, have no key; a trigger must have no key
--      and not be the watermark's ms.
-- The batch's job versions, watermarks and trigger instants are read with
-- one HMGET each and the watermarks it moved are written with one HSET at
-- the end; later fires of the batch see the watermark the earlier ones left.
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
local retention = ARGV[2]
-- unpack() takes at most ~8000 values: read and write in chunks.
local CHUNK = 4000
local function hmget(key, fields)
  local out = {}
  for from = 1, #fields, CHUNK do
    local part = redis.call('HMGET', key, unpack(fields, from, math.min(from + CHUNK - 1, #fields)))
    for i = 1, #part do out[#out + 1] = part[i] end
  end
  return out
end
local jobs = {}
for i = 5, #ARGV, 7 do jobs[#jobs + 1] = ARGV[i] end
local versions = hmget(KEYS[3], jobs)
local stored = hmget(KEYS[2], jobs)
local trig = hmget(KEYS[6], jobs)
-- Per job: watermark ms (number or false), its ms as written, its record
-- (nil for an old plain-ms watermark), whether this call wrote it.
local w_at, w_ms, w_rec, w_here = {}, {}, {}, {}
local dirty, dirty_order = {}, {}
for k, job in ipairs(jobs) do
  if w_at[job] == nil then
    local v = stored[k]
    if v then
      local ms, rec = string.match(v, '^(%-?%d+)|(.+)$')
      if ms then
        w_at[job], w_ms[job], w_rec[job] = tonumber(ms), ms, rec
      else
        w_at[job], w_ms[job] = tonumber(v), v
      end
    else
      w_at[job] = false
    end
  end
end
local function set_watermark(job, at, rec)
  w_at[job], w_ms[job], w_rec[job], w_here[job] = tonumber(at), at, rec, true
  if not dirty[job] then
    dirty[job] = true
    dirty_order[#dirty_order + 1] = job
  end
end
local out = {1}
local k = 0
for i = 5, #ARGV, 7 do
  k = k + 1
  local job, at, kind, version = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local attempt, uncertain, track = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local key = ARGV[3] .. job .. '@' .. at
  local value = ARGV[1] .. '|' .. attempt
  local at_n = tonumber(at)
  local at_watermark = w_at[job] and w_at[job] == at_n and w_rec[job] ~= nil
  local code = -1
  if uncertain ~= '' then
    local cur = redis.call('GET', key)
    local in_key = cur ~= false and cur ~= nil
    if not in_key and at_watermark then cur = w_rec[job] end
    if cur then
      local h, a = string.match(cur, '^(.*)|%d+|(%d+)$')
      if h == holder and string.find(',' .. uncertain .. ',', ',' .. a .. ',', 1, true) then
        if in_key then redis.call('SET', key, value, 'PX', retention) end
        if at_watermark then set_watermark(job, at, value) end
        code = 1
      end
    end
  end
  if code == -1 then
    if versions[k] ~= version then
      code = 2
    elseif kind == 's' and at_n > latest then
      code = 3
    elseif kind == 's' then
      code = 0
      local l = w_at[job]
      local fresh = (not l) or at_n > l
      local guard = fresh and trig[k] and tonumber(trig[k]) >= at_n
      if guard and redis.call('EXISTS', key) == 1 then fresh = false end
      if fresh then
        if l and w_rec[job] then
          local h = string.match(w_rec[job], '^(.*)|%d+|[^|]+$')
          if h ~= holder or w_here[job] then
            redis.call('SET', ARGV[3] .. job .. '@' .. w_ms[job], w_rec[job], 'NX', 'PX', retention)
          end
        end
        set_watermark(job, at, value)
        if guard then redis.call('SET', key, value, 'PX', retention) end
        code = 1
      end
    else
      code = 0
      if not at_watermark and redis.call('SET', key, value, 'NX', 'PX', retention) then
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
local fields = {}
for _, job in ipairs(dirty_order) do
  fields[#fields + 1] = job
  fields[#fields + 1] = w_ms[job] .. '|' .. w_rec[job]
  if #fields >= CHUNK then
    redis.call('HSET', KEYS[2], unpack(fields))
    fields = {}
  end
end
if #fields > 0 then redis.call('HSET', KEYS[2], unpack(fields)) end
return out
