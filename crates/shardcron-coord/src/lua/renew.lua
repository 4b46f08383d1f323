-- Extend leases that are still ours. KEYS: one lease per shard. ARGV: ttl
-- ms, then per lease (in KEYS order): holder|token.
-- Each lease is checked and extended on its own, exactly as one call per
-- lease would: renewing many in one call only saves the call overhead.
-- One command per lease: SET XX GET writes our value with a fresh TTL if
-- the key exists and returns what it held. That is our own value unless
-- the lease ended in the store (a holder's local validity ends before the
-- store's TTL, so only a store that lost the lease, e.g. a restart without
-- persistence, can get here) and another holder took it: then its value is
-- written back at once, in this same atomic step, so no other client ever
-- reads ours there. The only trace is that the other holder's lease got a
-- fresh TTL, which only keeps it longer than its holder counts on.
-- Returns per lease 1 extended, 0 not ours (nothing of ours written).
local out = {}
for i = 1, #KEYS do
  local mine = ARGV[i + 1]
  local old = redis.call('SET', KEYS[i], mine, 'XX', 'PX', ARGV[1], 'GET')
  if old == mine then
    out[i] = 1
  else
    if old then redis.call('SET', KEYS[i], old, 'PX', ARGV[1]) end
    out[i] = 0
  end
end
return out
