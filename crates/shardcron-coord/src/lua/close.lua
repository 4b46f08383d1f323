-- Close open at_least_once fires that reached a terminal state.
-- KEYS: open fires.
-- ARGV: per fire: field (job@at), holder|token of the closer.
-- An entry is removed only if it still names the closer: one that another
-- node recovered meanwhile stays open for that node. Returns how many were
-- removed.
local removed = 0
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if cur and string.sub(cur, 1, #ARGV[i + 1] + 1) == ARGV[i + 1] .. '|' then
    redis.call('HDEL', KEYS[1], ARGV[i])
    removed = removed + 1
  end
end
return removed
