-- Register or refresh a member, re-asserting the namespace's ring settings.
-- KEYS: members hash, deadline zset, config hash.
-- ARGV: id, info json, ttl ms, events channel, then config field, value, ...
-- Settings lost from the store are written again; settings that differ mean
-- another fleet configuration took the namespace over: nothing is registered.
-- Returns {is_new, now_ms}, or {-1, field, stored, given} on a mismatch.
for i = 5, #ARGV, 2 do
  local stored = redis.call('HGET', KEYS[3], ARGV[i])
  if stored and stored ~= ARGV[i + 1] then return {-1, ARGV[i], stored, ARGV[i + 1]} end
end
for i = 5, #ARGV, 2 do redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 1]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prev = redis.call('ZSCORE', KEYS[2], ARGV[1])
local is_new = 0
if (not prev) or tonumber(prev) <= now then is_new = 1 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if is_new == 1 then redis.call('PUBLISH', ARGV[4], 'member:join:' .. ARGV[1]) end
return {is_new, now}
