-- Take over open at_least_once fires whose holder is gone or abandoned them.
-- KEYS: lease, open fires.
-- ARGV: holder|token, retention ms, claim key prefix, then per fire: field
--   (job@at), the entry's value as the caller read it.
-- Returns {-1} if the lease is not ours, else {1, r1, r2, ...}: per fire 1 if
-- its entry still held exactly the value read and now names us with one more
-- delivery, no longer abandoned (its claim key too, so an old holder's lost claim reply can never
-- take it over), else 0 (closed, or recovered by someone else: nothing
-- written). Comparing the whole value is what makes a fire recoverable once
-- per entry: the rewrite changes it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1} end
local out = {1}
for i = 4, #ARGV, 2 do
  local field, seen = ARGV[i], ARGV[i + 1]
  local code = 0
  if redis.call('HGET', KEYS[2], field) == seen then
    local delivery, kind = string.match(seen, '|(%d+)|(%a)!?$')
    if delivery then
      local next = ARGV[1] .. '|' .. (tonumber(delivery) + 1) .. '|' .. kind
      redis.call('HSET', KEYS[2], field, next)
      redis.call('SET', ARGV[3] .. field, ARGV[1] .. '|0', 'PX', ARGV[2])
      code = 1
    end
  end
  out[#out + 1] = code
end
return out
