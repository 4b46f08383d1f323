-- Read a shard's queued triggers without removing them. KEYS: trigger queue,
-- lease, job-state hash (a job exists while its field `id|v` does). ARGV: holder|token. Only the lease holder may read
-- them. A trigger leaves the queue inside the claim of its fire (claim.lua),
-- so a lost reply here loses nothing; triggers of jobs that no longer exist
-- can never be claimed and are dropped.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {} end
local out = {}
for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local job = string.match(item, '^(.*)|%d+$')
  if job and redis.call('HEXISTS', KEYS[3], job .. '|v') == 1 then
    out[#out + 1] = item
  else
    redis.call('LREM', KEYS[1], 0, item)
  end
end
return out
