-- Claim a batch of fires of one shard, atomically with the lease check.
-- KEYS: lease, last-fired hash, job-version hash.
-- ARGV: holder|token, retention ms, claim key prefix, then per fire:
--   job id, scheduled ms, kind ('s' scheduled, 't' trigger, 'r' retry of a
--   claim by this holder whose reply was lost), job version.
-- A trigger or retry whose claim key already names this holder (under any
-- token) is claimed again: only that holder can know it never started it.
-- Returns {-1} if the lease is not ours, else {1, r1, r2, ...} with per fire:
--   1 claimed, 0 already claimed (or not after the job's last fired time),
--   2 the job was changed or removed since the caller loaded it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1} end
local holder_prefix = string.match(ARGV[1], '^(.*|)%d+$')
local out = {1}
for i = 4, #ARGV, 4 do
  local job, at, kind, version = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local code = 0
  if redis.call('HGET', KEYS[3], job) ~= version then
    code = 2
  elseif kind ~= 's' and string.sub(redis.call('GET', ARGV[3] .. job .. '@' .. at) or '', 1, #holder_prefix) == holder_prefix then
    redis.call('SET', ARGV[3] .. job .. '@' .. at, ARGV[1], 'PX', ARGV[2])
    code = 1
  else
    local fresh = true
    if kind ~= 't' then
      local last = redis.call('HGET', KEYS[2], job)
      fresh = (not last) or tonumber(at) > tonumber(last)
    end
    if fresh and redis.call('SET', ARGV[3] .. job .. '@' .. at, ARGV[1], 'NX', 'PX', ARGV[2]) then
      if kind ~= 't' then redis.call('HSET', KEYS[2], job, at) end
      code = 1
    end
  end
  out[#out + 1] = code
end
return out
