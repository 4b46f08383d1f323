-- Register or refresh a member. KEYS: members hash, deadline zset.
-- ARGV: id, info json, ttl ms, events channel. Returns {is_new, now_ms}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prev = redis.call('ZSCORE', KEYS[2], ARGV[1])
local is_new = 0
if (not prev) or tonumber(prev) <= now then is_new = 1 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if is_new == 1 then redis.call('PUBLISH', ARGV[4], 'member:join:' .. ARGV[1]) end
return {is_new, now}
