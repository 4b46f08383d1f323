-- Extend leases that are still ours. KEYS: one lease per shard. ARGV: ttl
-- ms, then per lease (in KEYS order): holder|token.
-- Each lease is checked and extended on its own, exactly as one call per
-- lease would: renewing many in one call only saves the call overhead.
-- Per lease: GET, and PEXPIRE only if the value is ours. A lease that is
-- not ours (it ended in the store and another holder took it) is left
-- exactly as it is, value and TTL: its holder counts on the TTL it set, and
-- shortening it to ours would let a third node take the shard while that
-- holder still runs it (an earlier single-command SET XX GET, which wrote a
-- foreign value back with our TTL, did exactly that; the conformance case
-- a_refused_renewal_leaves_the_new_holders_expiry_alone holds it).
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
