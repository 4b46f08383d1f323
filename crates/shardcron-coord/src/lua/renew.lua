-- Extend a lease only if it is still ours. KEYS: lease. ARGV: holder|token, ttl ms.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
