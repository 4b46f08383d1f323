-- Acquire a shard lease. KEYS: lease, fence counter. ARGV: holder, ttl ms.
-- A free lease gets a new fencing token (INCR, never reset); a lease already
-- held by this holder is refreshed and keeps its token.
-- Returns {token, ""} on success, {-1, current_value} when held by another.
local cur = redis.call('GET', KEYS[1])
if cur then
  local holder, token = string.match(cur, '^(.*)|(%d+)$')
  if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {tonumber(token), ''}
  end
  return {-1, cur}
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return {token, ''}
