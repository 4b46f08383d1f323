-- Extend leases that are still ours. KEYS: one lease per shard. ARGV: ttl
-- ms, then per lease (in KEYS order): holder|token.
-- Each lease is checked and extended on its own, exactly as one call per
-- lease would: renewing many in one call only saves the call overhead.
-- Per lease: its value, and PEXPIRE only if the value is ours. A lease that is
-- not ours (it ended in the store and another holder took it) is left
-- exactly as it is, value and TTL: its holder counts on the TTL it set, and
-- shortening it to ours would let a third node take the shard while that
-- holder still runs it (an earlier single-command SET XX GET, which wrote a
-- foreign value back with our TTL, did exactly that; the conformance case
-- a_refused_renewal_leaves_the_new_holders_expiry_alone holds it).
-- The values are read first, all of them (read_strings, with one MGET),
-- and only then is any lease extended: the script writes no value and runs
-- atomically, so each lease is decided on the value a GET of its own would
-- have read, and a lease key of the wrong type fails the call before any
-- lease is extended. One command for the call instead of one per lease.
-- Returns per lease 1 extended, 0 not ours (nothing written).
local values = read_strings(KEYS, #KEYS)
local out = {}
for i = 1, #KEYS do
  if values[i] == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
