-- Delete a lease only if it is still ours. KEYS: lease. ARGV: holder|token, channel, shard.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'lease:release:' .. ARGV[3])
  return 1
end
return 0
