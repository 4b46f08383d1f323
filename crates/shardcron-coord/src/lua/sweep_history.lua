-- One step of a sweep over the per-job run counts that removes the history
-- of jobs that are no longer defined and ran last before a cutoff (a job
-- that is defined keeps its last runs however long ago they were).
-- KEYS: per-job history hash, per-job counts hash (job -> `count|hour`),
--   job index.
-- ARGV: cursor, hour before which an undefined job's history goes, counts
--   looked at per step, per-job cap.
-- Returns the next cursor ('0' once the sweep went round).
local reply = redis.call('HSCAN', KEYS[2], ARGV[1], 'COUNT', ARGV[3])
local entries = reply[2]
local cutoff = tonumber(ARGV[2])
local cap = tonumber(ARGV[4])
local stale = {}
for i = 1, #entries, 2 do
  local hour = tonumber(string.match(entries[i + 1], '|(%-?%d+)$'))
  if hour == nil or hour < cutoff then stale[#stale + 1] = entries[i] end
end
if #stale > 0 then
  local defined = redis.call('ZMSCORE', KEYS[3], unpack(stale))
  local gone, fields = {}, {}
  for i, job in ipairs(stale) do
    if not defined[i] then
      gone[#gone + 1] = job
      for slot = 0, cap - 1 do
        fields[#fields + 1] = string.format('%d:%s', slot, job)
      end
      -- unpack() takes at most ~8000 values
      if #fields >= 4000 then
        redis.call('HDEL', KEYS[1], unpack(fields))
        fields = {}
      end
    end
  end
  if #fields > 0 then redis.call('HDEL', KEYS[1], unpack(fields)) end
  if #gone > 0 then redis.call('HDEL', KEYS[2], unpack(gone)) end
end
return reply[1]
