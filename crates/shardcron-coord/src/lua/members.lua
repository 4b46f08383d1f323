-- List live members, dropping expired ones, and hand out the shard weights
-- placement balances, in one step.
-- KEYS: members hash, deadline zset, live weights hash, live weights version,
--   weights snapshot hash, snapshot meta hash (ver, at), placement hash
--   (ver, map).
-- ARGV: events channel, known snapshot version ('' = none, '-' = weights not
--   wanted), snapshot refresh interval ms, known placement version ('' =
--   none, '-' = placement not wanted).
-- The snapshot is refreshed from the live weights when they changed and the
-- last refresh is at least the interval old, so a burst of job writes moves
-- shards once; every node reads the same snapshot.
-- Returns {now_ms, snapshot_version, included (0/1), {shard, units, ...},
--   placement_version, placement included (0/1), placement JSON or '',
--   id1, info1, id2, info2, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[1], id)
  redis.call('PUBLISH', ARGV[1], 'member:leave:' .. id)
end
local snap_version = 0
local included = 0
local weights = {}
if ARGV[2] ~= '-' then
  local live_version = tonumber(redis.call('GET', KEYS[4]) or '0')
  local meta = redis.call('HMGET', KEYS[6], 'ver', 'at')
  snap_version = tonumber(meta[1] or '0')
  local snap_at = tonumber(meta[2] or '0')
  if live_version ~= snap_version and now - snap_at >= tonumber(ARGV[3]) then
    if redis.call('EXISTS', KEYS[3]) == 1 then
      redis.call('COPY', KEYS[3], KEYS[5], 'REPLACE')
    else
      redis.call('DEL', KEYS[5])
    end
    redis.call('HSET', KEYS[6], 'ver', live_version, 'at', now)
    snap_version = live_version
  end
  if ARGV[2] ~= tostring(snap_version) then
    included = 1
    weights = redis.call('HGETALL', KEYS[5])
  end
end
local placement_version = 0
local placement_included = 0
local placement = ''
if ARGV[4] ~= '-' then
  local stored = redis.call('HMGET', KEYS[7], 'ver', 'map')
  placement_version = tonumber(stored[1] or '0')
  if placement_version > 0 and ARGV[4] ~= tostring(placement_version) then
    placement_included = 1
    placement = stored[2] or ''
  end
end
local out = {now, snap_version, included, weights, placement_version, placement_included, placement}
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[1], id) or ''
end
return out
