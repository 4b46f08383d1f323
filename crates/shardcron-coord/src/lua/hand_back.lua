-- Hand back fires of one shard whose claim reply the caller never saw.
-- KEYS: open fires, shard version counter, watermark hash.
-- ARGV: holder (node/instance), retention ms, claim key prefix, events
--   channel, shard, then per fire: job id, scheduled ms, kind ('s' or 't'),
--   fencing token of the lost attempts, lost attempt ids (comma-separated).
-- The caller runs a fire only on seeing a Claimed reply, so a fire whose
-- claim key still holds one of its lost attempts was never started by it.
-- A fire's record is its claim key, else the job's watermark when that is at
-- the fire's ms (see claim.lua). Per fire:
--   1. the record holds one of the caller's lost attempts: the attempt
--      landed. The claim key is set to holder|token|h (no attempt can take a
--      record in that form over, a key wins over the watermark, and NX fails
--      on it), and the fire gets an
--      abandoned open entry (holder|token|0|kind!, delivery 0: never
--      delivered; a tracked claim's own entry is marked abandoned instead),
--      for the shard's lease holder to recover and run. Returns 1.
--   2. the record already reads holder|token|h: an earlier hand-back of this
--      caller landed although its reply was lost. Returns 1.
--   3. anything else (no record: the attempt never landed; another claim):
--      nothing is written. Returns 0.
-- When anything was handed back, the shard's version moves and an event is
-- published, so its lease holder looks at its open entries at once.
local holder = ARGV[1]
local out = {}
local moved = false
for i = 6, #ARGV, 5 do
  local job, at, kind, token, lost = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local field = job .. '@' .. at
  local key = ARGV[3] .. field
  local code = 0
  local cur = redis.call('GET', key)
  if not cur then
    local w = redis.call('HGET', KEYS[3], job)
    local ms, rec = string.match(w or '', '^(%-?%d+)|(.+)$')
    if ms and tonumber(ms) == tonumber(at) then cur = rec end
  end
  if cur then
    local h, a = string.match(cur, '^(.*)|%d+|(%w+)$')
    if h == holder and a == 'h' then
      code = 1
    elseif h == holder and string.find(',' .. lost .. ',', ',' .. a .. ',', 1, true) then
      redis.call('SET', key, holder .. '|' .. token .. '|h', 'PX', ARGV[2])
      local entry = redis.call('HGET', KEYS[1], field)
      if not entry then
        redis.call('HSET', KEYS[1], field, holder .. '|' .. token .. '|0|' .. kind .. '!')
      elseif string.sub(entry, 1, #holder + 1) == holder .. '|' and string.sub(entry, -1) ~= '!' then
        redis.call('HSET', KEYS[1], field, entry .. '!')
      end
      code = 1
      moved = true
    end
  end
  out[#out + 1] = code
end
if moved then
  redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', ARGV[4], 'jobs:' .. ARGV[5])
end
return out
