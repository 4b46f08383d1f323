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
-- The values are read with one MGET (in chunks: unpack() takes at most
-- ~8000 values) before any lease is extended: the script writes no value
-- and runs atomically, so each lease is decided on the value a GET of its
-- own would have read. One command for the call instead of one per lease.
-- Returns per lease 1 extended, 0 not ours (nothing written).
local out = {}
local CHUNK = 4000
for from = 1, #KEYS, CHUNK do
  local to = math.min(from + CHUNK - 1, #KEYS)
  local values = redis.call('MGET', unpack(KEYS, from, to))
  for i = from, to do
    if values[i - from + 1] == ARGV[i + 1] then
      redis.call('PEXPIRE', KEYS[i], ARGV[1])
      out[i] = 1
    else
      out[i] = 0
    end
  end
end
return out
