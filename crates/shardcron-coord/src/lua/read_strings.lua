-- Prelude of the scripts that read many leases at once (claim, renew): it
-- is prepended to each of them. read_strings(keys, count) returns the
-- values of keys[1..count] as a GET of each would: a missing key reads
-- false, and a key that holds something other than a string raises
-- WRONGTYPE, which ends the script with that error. MGET alone would
-- read such a key as missing, and a lease key turned into a list (an
-- operator's mistake, a foreign tool, a damaged restore) would then look
-- like a lease that lapsed instead of the store fault it is. So each key
-- MGET reads as missing is read again with GET: one command more only
-- for a lease that is gone, which a healthy fleet rarely asks about.
-- The scripts read every key before they write anything, so the error
-- leaves the store as it was.
-- unpack() takes at most ~8000 values: MGET in chunks.
local function read_strings(keys, count)
  local values = {}
  for from = 1, count, 4000 do
    local to = math.min(from + 3999, count)
    local part = redis.call('MGET', unpack(keys, from, to))
    for i = from, to do
      local v = part[i - from + 1]
      if not v then v = redis.call('GET', keys[i]) end
      values[i] = v
    end
  end
  return values
end
