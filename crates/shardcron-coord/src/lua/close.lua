-- Close (or abandon) open at_least_once fires.
-- KEYS: open fires.
-- ARGV: per fire: field (job@at), holder|token|delivery of the closer, mode ('c' a
--   terminal state: remove the entry; 'a' given up without one: mark it
--   abandoned by appending '!' to its value, for the lease holder to recover).
-- An entry is touched only if it still names the closer and its delivery: one
-- recovered meanwhile (by another node, or by the same holder under the same
-- token after it abandoned it) stays open for that delivery. Returns how many were
-- touched.
local touched = 0
for i = 1, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if cur and string.sub(cur, 1, #ARGV[i + 1] + 1) == ARGV[i + 1] .. '|' then
    if ARGV[i + 2] == 'a' then
      if string.sub(cur, -1) ~= '!' then
        redis.call('HSET', KEYS[1], ARGV[i], cur .. '!')
      end
    else
      redis.call('HDEL', KEYS[1], ARGV[i])
    end
    touched = touched + 1
  end
end
return touched
