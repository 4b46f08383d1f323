-- Acquire a shard lease. KEYS: lease, fence counter, job-state hash, and
-- the two hashes of the old layout (see the prelude). ARGV: holder, ttl ms.
-- A free lease gets a new fencing token: one more than the counter, and at
-- least the server time in microseconds, so tokens keep increasing even if
-- the store lost the counter (AOF everysec, an asynchronous failover) as long
-- as its clock does not go back. A lease already held by this holder is
-- refreshed and keeps its token.
-- Returns {token, ""} on success, {-1, current_value} when held by another.
migrate_job_state(KEYS[3], KEYS[4], KEYS[5])
local cur = redis.call('GET', KEYS[1])
if cur then
  local holder, token = string.match(cur, '^(.*)|(%d+)$')
  if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {tonumber(token), ''}
  end
  return {-1, cur}
end
local t = redis.call('TIME')
local floor = t[1] .. string.sub('000000' .. t[2], -6)
local token = redis.call('INCR', KEYS[2])
if token < tonumber(floor) then
  redis.call('SET', KEYS[2], floor)
  token = floor
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return {tonumber(token), ''}
