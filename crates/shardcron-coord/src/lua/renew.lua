-- Extend leases that are still ours. KEYS: one lease per shard. ARGV: ttl
-- ms, then per lease (in KEYS order): holder|token.
-- Each lease is checked and extended on its own, exactly as one call per
-- lease would: renewing many in one call only saves the call overhead.
-- Returns per lease 1 extended, 0 not ours (nothing written).
local out = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
