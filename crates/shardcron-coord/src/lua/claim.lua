-- Claim fires of one or more shards, each batch atomically with its lease
-- check; the batches are independent (one lost lease fails only its own).
-- KEYS: per batch: lease, job-state hash (field job: the watermark, job|v:
--   the job's version, job|t: its last trigger's ms, |t: the latest of the
--   shard's), trigger queue, open fires, and with f = 2 (below) the shard's
--   version counter.
-- ARGV: retention ms, then per batch: holder|token, claim key prefix, max
--   early ms, fire count n, form f (2, 4 or 7), then
--   * f = 4 or 7, per fire (f each): job id, scheduled ms, job version,
--     attempt id, and with f = 7 also kind ('s' scheduled, 't' trigger),
--     uncertain attempts (comma-separated, '' if none), track ('1' for
--     delivery at_least_once, else ''). A fire given with 4 fields is
--     scheduled, has no uncertain attempt and is not tracked;
--   * f = 2, the common case: the shard version the caller read its job
--     versions at or after (loaded), one attempt id for every fire of the
--     batch, the claim mark the caller expects ('' if none: see "Claim
--     marks" below), this batch's own new mark, the number of runs, then
--     per run: its instant (scheduled ms), its fire count k, and the k
--     job ids. A run is a stretch of the batch's fires that share their
--     instant, in the batch's order, so the instant is sent (and read, and
--     joined to the record) once per run rather than once per fire.
--     Every fire is
--     plain as with f = 4, and the job versions are not sent: a job whose
--     version is not above loaded has not been written since the shard was
--     at loaded, so the caller's version of it is current; when the shard
--     version still is loaded, no job of the shard was written and no
--     version is read at all (docs/ARCHITECTURE.md, "Job versions by
--     shard"). Every argument is a string Redis parses and Lua interns:
--     fewer per fire is most of what a claim costs.
--
-- The claim record of a fire is holder|token|attempt. It lives in the
-- fire's claim key (prefix .. job@ms) when that exists, else in the job's
-- watermark (field job: `ms|holder|token|attempt`, the last scheduled fire
-- claimed) when the watermark is at that ms; a key always wins. A scheduled
-- fire is claimed by moving the watermark, with no key of its own; a key is
-- written only where the watermark cannot hold the record:
--   * a trigger's claim (set NX, as before);
--   * the record a moved watermark held, when the holder moving it is not
--     the one that wrote it, or wrote it earlier in this same call (set NX:
--     an existing key is the record already). A holder's other records are
--     dropped: its node learned their outcome, because it never claims a
--     later fire of a job in a call without the retry of an unresolved one
--     ahead of it (see docs/ARCHITECTURE.md, "The watermark as the claim");
--   * a scheduled fire claimed at or before the job's latest trigger
--     instant (that trigger may share its ms: the key makes them one fire).
-- Per fire, in order:
--   1. a lost earlier attempt of this holder found in the fire's record is
--      taken over: the record is rewritten with this attempt, so each lost
--      attempt can be taken over once, by one later attempt;
--   2. the job's version must be the caller's (f = 2: not above loaded),
--      else 2 (nothing written);
--   3. a scheduled fire must not be later than server time + max early,
--      else 3 (a trigger's ms is the store's own: see trigger.lua);
--   4. a scheduled fire must be later than the watermark and, if a trigger
--      of the job is at or after it, have no key; a trigger must have no key
--      and not be the watermark's ms.
-- The leases (and f = 2 shard versions) of all the call's batches are
-- read with one MGET before the first batch is decided (the script writes
-- none of them, so each batch sees what it would have read itself; a key
-- of the wrong type fails the call before anything is written: see
-- read_strings.lua, prepended to this script).
-- A batch's job versions, watermarks and trigger instants are read with
-- one HMGET of the job-state hash and the watermarks it moved are written
-- with one HSET at the end; later fires of the batch see the watermark the earlier ones left.
-- Two batches of one shard in one call count as one call: a record the
-- first wrote is "written earlier in this same call" for the second.
-- A trigger that was claimed, or found claimed, leaves the trigger queue here
-- and nowhere else, so reading the queue never loses a trigger. A tracked
-- fire this call claims gets its open entry (field job@at, value
-- holder|token|1|kind), kept until a terminal record closes it or a
-- recovery rewrites it; an untracked one writes nothing more.
-- Claim marks (docs/ARCHITECTURE.md, "Claim marks"): field |c of the
-- job-state hash is `holder|token|mark` as the last batch that wrote a
-- watermark of the shard left it. An f = 2 batch that is its shard's only
-- batch in the call and finds the shard version at loaded (markable)
-- writes its own new mark; any other batch that writes a watermark writes
-- '-', which no caller expects. A markable batch whose expected mark is
-- the one in |c, under its own lease, and whose fires are all later than
-- the shard's latest trigger, is decided without reading a watermark: its
-- caller promises that each of its jobs appears once and that each fire
-- is later than the watermark that caller's call wrote with that mark
-- (its own record, under this lease). Since every other write of a
-- watermark either writes |c or moves the shard version, the watermarks
-- are still as that call left them, and each fire is claimed exactly as
-- the per-fire checks below would claim it: moved past its own record
-- written in an earlier call, so no key is written.
-- Returns, per batch in order: -1 if the lease is not its holder's, else a
-- status followed by one code per fire. Status 1: decided, no mark
-- written; 2: decided by the per-fire checks, and this batch's mark
-- written; 3: decided on the expected mark, and this batch's mark
-- written. Codes: 1 claimed, 0 already claimed (or not after the
-- watermark), 2 job changed, 3 not yet due by the server's clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local retention = ARGV[1]
local out, outs = {}, 0
-- Appends a batch's lease code. The two per-fire loops append inline
-- instead: a call per fire there costs about 1 % of the script's
-- instructions.
local function put(code)
  outs = outs + 1
  out[outs] = code
end
-- unpack() takes at most ~8000 values: read and write in chunks.
local CHUNK = 4000
-- HMGET of fields[1..count] of key.
local function hmget(key, fields, count)
  if count == 0 then return {} end
  if count <= CHUNK then return redis.call('HMGET', key, unpack(fields, 1, count)) end
  local all = {}
  for from = 1, count, CHUNK do
    local part = redis.call('HMGET', key, unpack(fields, from, math.min(from + CHUNK - 1, count)))
    for i = 1, #part do all[#all + 1] = part[i] end
  end
  return all
end
-- Decimal ms strings already converted, for the whole call: most fires of
-- a call share their instant, and most watermarks share theirs.
local nums = {}
local function num(s)
  local v = nums[s]
  if not v then
    v = tonumber(s)
    nums[s] = v
  end
  return v
end

-- What the batches of this call share. The tables below are made once per
-- call, not per batch (made empty and grown key by key, per batch, they
-- cost 15 % of the script's instructions per fire; docs/BENCHMARKS.md
-- §4o); the arrays are indexed by a fire's position in the whole call (g).
-- Per fire at g: its job, its instant as given and as a number, and (f = 4
-- or 7) where its arguments start.
local jobs, ats, at_ns, base = {}, {}, {}, {}
local placed = 0
-- Per watermark hash: job -> the position of the job's first fire in this
-- call in that hash, which keys the job's watermark below. A later batch
-- of the same shard finds the watermark as the earlier one left it:
-- batches of one shard in one call count as one call.
local first_in = {}
-- Per job (by that position): the watermark's ms (a number, or false when
-- there is none), the watermark as stored, the position of the '|' that
-- ends its ms (nil for an old plain-ms watermark, which has no record),
-- and the batch of this call that last wrote it (0: none, so the stored
-- watermark is not this call's). The record
-- (holder|token|attempt) is cut out of the stored value only where it is
-- needed: most fires only compare ms and check whose the record is.
local w_at, w_raw, w_sep, w_batch = {}, {}, {}, {}
-- Scratch of one batch: the job-state fields to read, and the watermark
-- fields to write.
local wanted, fields = {}, {}
local batch_no = 0
-- The jobs the current batch wrote, each followed by its position (2 *
-- dirty_n values).
local dirty, dirty_n = {}, 0
-- A batch with no trigger to look at.
local NO_TRIGGERS = {}
-- The lease the previous batch claimed under, and what is derived from it:
-- the batches of one call nearly always share it.
local last_lease, holder, holder_bar, lease_bar
-- The current batch's claim key prefix.
local prefix

-- The record of the watermark at g (nil when it has none).
local function record(g)
  local sep = w_sep[g]
  return sep and string.sub(w_raw[g], sep + 1)
end
-- Whether the watermark record at g (holder|token|attempt) is the current
-- batch's holder's, read in place: first as written under this very lease
-- (lease_bar is holder|token|, and an attempt with no '|', two plain
-- finds), else under any token of the holder.
local function own(g)
  local from = w_sep[g] + 1
  local v = w_raw[g]
  if string.find(v, lease_bar, from, true) == from then
    local rest = from + #lease_bar
    return rest <= #v and string.find(v, '|', rest, true) == nil
  end
  return string.find(v, holder_bar, from, true) == from
    and string.find(v, '^%d+|[^|]+$', from + #holder_bar) ~= nil
end
-- Moves the watermark at g to at (at_n as a number); raw is
-- `at|holder|token|attempt`.
local function set_watermark(g, job, at, at_n, raw)
  if w_batch[g] ~= batch_no then
    w_batch[g] = batch_no
    dirty[dirty_n + 1] = job
    dirty[dirty_n + 2] = g
    dirty_n = dirty_n + 2
  end
  w_at[g], w_raw[g], w_sep[g] = at_n, raw, #at + 1
end
-- Claims the scheduled fire of job at at (at_n as a number), its watermark
-- at g, if the fire is later than the watermark and, when trig (the job's
-- latest trigger ms, or nil) is at or after it, has no claim key (key: the
-- fire's claim key if the caller made it already). tail is the record's
-- `|holder|token|attempt`. Returns 1 if claimed, else 0.
local function claim_scheduled(g, job, at, at_n, trig, key, tail)
  local l = w_at[g]
  if l and at_n <= l then return 0 end
  if trig and tonumber(trig) >= at_n then
    key = key or (prefix .. job .. '@' .. at)
    if redis.call('EXISTS', key) == 1 then return 0 end
  else
    key = nil
  end
  local sep = w_sep[g]
  if l and sep and (w_batch[g] ~= 0 or not own(g)) then
    local raw = w_raw[g]
    redis.call('SET', prefix .. job .. '@' .. string.sub(raw, 1, sep - 1),
      string.sub(raw, sep + 1), 'NX', 'PX', retention)
  end
  set_watermark(g, job, at, at_n, at .. tail)
  if key then redis.call('SET', key, string.sub(tail, 2), 'PX', retention) end
  return 1
end

-- Per job-state hash, how many batches of this call are the shard's.
local batches_of = {}

-- The f = 2 batch at ARGV[a] (n fires) decided on its expected mark (see
-- "Claim marks" in the header): if |c of wm_key is expected and the
-- shard's latest trigger is before every fire, each fire due by latest is
-- claimed (its watermark set to it, with the batch's record) and the rest
-- are not yet due (3), and mark is written with the watermarks. Returns
-- false, having written and appended nothing, when the mark or a trigger
-- does not allow it.
local function fast(wm_key, a, expected, latest, mark)
  local seen = redis.call('HMGET', wm_key, '|c', '|t')
  if seen[1] ~= expected then return false end
  local runs = tonumber(ARGV[a + 9])
  local trig = seen[2] and tonumber(seen[2])
  if trig then
    local i = a + 10
    for _ = 1, runs do
      if num(ARGV[i]) <= trig then return false end
      i = i + 2 + tonumber(ARGV[i + 1])
    end
  end
  local tail = '|' .. ARGV[a] .. '|' .. ARGV[a + 6]
  fields[1], fields[2] = '|c', mark
  local count = 2
  local i = a + 10
  for _ = 1, runs do
    local at = ARGV[i]
    local k = tonumber(ARGV[i + 1])
    if num(at) <= latest then
      -- Every fire of a run has one instant, hence one record.
      local value = at .. tail
      for x = i + 2, i + 1 + k do
        fields[count + 1] = ARGV[x]
        fields[count + 2] = value
        count = count + 2
        if count >= CHUNK then
          redis.call('HSET', wm_key, unpack(fields, 1, count))
          count = 0
        end
        outs = outs + 1
        out[outs] = 1
      end
    else
      for _ = 1, k do
        outs = outs + 1
        out[outs] = 3
      end
    end
    i = i + 2 + k
  end
  if count > 0 then redis.call('HSET', wm_key, unpack(fields, 1, count)) end
  return true
end

-- One batch: keys from KEYS[k + 1], arguments from ARGV[a] (its
-- holder|token), n fires (f arguments each; with f = 2, in runs); lease_is and shard_version
-- are the values of its lease and (f = 2) shard version keys, as read
-- before the first batch (see the end of the script).
local function claim(k, a, n, f, lease_is, shard_version)
  batch_no = batch_no + 1
  local wm_key = KEYS[k + 2]
  local queue_key, open_key = KEYS[k + 3], KEYS[k + 4]
  local holder_token = ARGV[a]
  prefix = ARGV[a + 1]
  if lease_is ~= holder_token then
    put(-1)
    return
  end
  put(1)
  local status_at = outs
  if holder_token ~= last_lease then
    last_lease = holder_token
    holder = string.match(holder_token, '^(.*)|%d+$')
    holder_bar = holder .. '|'
    lease_bar = holder_token .. '|'
  end
  local latest = now + tonumber(ARGV[a + 2])
  -- The mark this batch writes with its watermarks ('-' unless markable).
  local mark = '-'
  if f == 2 and shard_version == ARGV[a + 5] and batches_of[wm_key] == 1 then
    mark = holder_token .. '|' .. ARGV[a + 8]
    local expected = ARGV[a + 7]
    if expected ~= '' and fast(wm_key, a, holder_token .. '|' .. expected, latest, mark) then
      out[status_at] = 3
      return
    end
  end
  -- This batch's fires are at g0 + 1 .. g0 + n. With f = 2 the batch gives
  -- the shard version its fires' job versions were read at (loaded) and
  -- one attempt id for all its fires; unchanged: the shard version is
  -- still that.
  local g0 = placed
  placed = placed + n
  local earliest = math.huge
  local loaded, suffix, unchanged = nil, nil, false
  -- The job-state fields to read: per fire its watermark, and its version
  -- unless the shard is unchanged; then the shard's latest trigger.
  if f == 2 then
    loaded = ARGV[a + 5]
    suffix = '|' .. holder_token .. '|' .. ARGV[a + 6]
    unchanged = shard_version == loaded
    local g = g0
    local i = a + 10
    for _ = 1, tonumber(ARGV[a + 9]) do
      local at = ARGV[i]
      local at_n = num(at)
      if at_n < earliest then earliest = at_n end
      local k = tonumber(ARGV[i + 1])
      for x = i + 2, i + 1 + k do
        g = g + 1
        local j = g - g0
        local job = ARGV[x]
        jobs[g], ats[g], at_ns[g] = job, at, at_n
        if unchanged then
          wanted[j] = job
        else
          wanted[2 * j - 1] = job
          wanted[2 * j] = job .. '|v'
        end
      end
      i = i + 2 + k
    end
    loaded = tonumber(loaded)
  else
    local g = g0
    for i = a + 5, a + 5 + f * (n - 1), f do
      g = g + 1
      local j = g - g0
      local job = ARGV[i]
      local at_n = num(ARGV[i + 1])
      jobs[g], ats[g], at_ns[g], base[g] = job, ARGV[i + 1], at_n, i
      wanted[2 * j - 1] = job
      wanted[2 * j] = job .. '|v'
      if at_n < earliest then earliest = at_n end
    end
  end
  local per = unchanged and 1 or 2
  -- The shard's latest trigger instant, at or after every job's own.
  wanted[per * n + 1] = '|t'
  -- Per fire j of the batch: state[per * j - per + 1] its job's watermark
  -- and, with per = 2, state[2j] its version.
  local state = hmget(wm_key, wanted, per * n + 1)
  -- Per fire j, its job's last trigger's ms, read only when the shard has a
  -- trigger at or after the batch's earliest fire: otherwise no job of
  -- the batch has one at or after any of its fires.
  local trigs = NO_TRIGGERS
  local shard_trig = state[per * n + 1]
  if shard_trig and tonumber(shard_trig) >= earliest then
    for j = 1, n do wanted[j] = jobs[g0 + j] .. '|t' end
    trigs = hmget(wm_key, wanted, n)
  end
  local first = first_in[wm_key]
  if not first then
    first = {}
    first_in[wm_key] = first
  end
  for j = 1, n do
    local job = jobs[g0 + j]
    if not first[job] then
      local g = g0 + j
      first[job] = g
      local v = state[per * j - per + 1]
      if v then
        local sep = string.find(v, '|', 1, true)
        if sep and sep < #v then
          w_at[g], w_raw[g], w_sep[g] = num(string.sub(v, 1, sep - 1)), v, sep
        else
          w_at[g], w_raw[g], w_sep[g] = tonumber(v), v, nil
        end
      else
        w_at[g], w_raw[g], w_sep[g] = false, nil, nil
      end
      w_batch[g] = 0
    end
  end
  dirty_n = 0
  if f == 2 then
    -- Every fire is a plain scheduled one (see the header): only its job's
    -- version, the server's clock and the watermark decide.
    for j = 1, n do
      local fg = g0 + j
      local at_n = at_ns[fg]
      local code
      -- A job whose version is not above the loaded shard version was not
      -- written since, so the caller's version of it is current.
      if not unchanged and not ((tonumber(state[2 * j]) or math.huge) <= loaded) then
        code = 2
      elseif at_n > latest then
        code = 3
      else
        local job = jobs[fg]
        code = claim_scheduled(first[job], job, ats[fg], at_n, trigs[j], nil, suffix)
      end
      outs = outs + 1
      out[outs] = code
    end
  else
    for j = 1, n do
      local fg = g0 + j
      local job, at, i = jobs[fg], ats[fg], base[fg]
      local g = first[job]
      local kind, uncertain, track = 's', '', ''
      if f == 7 then kind, uncertain, track = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6] end
      local at_n = at_ns[fg]
      local at_watermark = w_at[g] == at_n and w_sep[g] ~= nil
      local key = nil
      local code = -1
      if uncertain ~= '' then
        key = prefix .. job .. '@' .. at
        local cur = redis.call('GET', key)
        local in_key = cur ~= false and cur ~= nil
        if not in_key and at_watermark then cur = record(g) end
        if cur then
          local h, a2 = string.match(cur, '^(.*)|%d+|(%d+)$')
          if h == holder and string.find(',' .. uncertain .. ',', ',' .. a2 .. ',', 1, true) then
            local value = holder_token .. '|' .. ARGV[i + 3]
            if in_key then redis.call('SET', key, value, 'PX', retention) end
            if at_watermark then set_watermark(g, job, at, at_n, at .. '|' .. value) end
            code = 1
          end
        end
      end
      if code == -1 then
        if state[2 * j] ~= ARGV[i + 2] then
          code = 2
        elseif kind == 's' and at_n > latest then
          code = 3
        elseif kind == 's' then
          code = claim_scheduled(g, job, at, at_n, trigs[j], key, '|' .. holder_token .. '|' .. ARGV[i + 3])
        else
          code = 0
          key = key or (prefix .. job .. '@' .. at)
          if not at_watermark
            and redis.call('SET', key, holder_token .. '|' .. ARGV[i + 3], 'NX', 'PX', retention) then
            code = 1
          end
        end
      end
      if code == 1 and track == '1' then
        redis.call('HSET', open_key, job .. '@' .. at, holder_token .. '|1|' .. kind)
      end
      if kind == 't' and (code == 0 or code == 1) then
        redis.call('LREM', queue_key, 1, job .. '|' .. at)
      end
      outs = outs + 1
      out[outs] = code
    end
  end
  local count = 0
  if mark ~= '-' or dirty_n > 0 then
    fields[1], fields[2] = '|c', mark
    count = 2
    if mark ~= '-' then out[status_at] = 2 end
  end
  for d = 1, dirty_n, 2 do
    fields[count + 1] = dirty[d]
    fields[count + 2] = w_raw[dirty[d + 1]]
    count = count + 2
    if count >= CHUNK then
      redis.call('HSET', wm_key, unpack(fields, 1, count))
      count = 0
    end
  end
  if count > 0 then redis.call('HSET', wm_key, unpack(fields, 1, count)) end
end

-- Where each batch starts (keys at k + 1, arguments at a) and its fire
-- count and form; and the keys every batch checks: its lease and, with
-- f = 2, its shard version.
local bk, ba, bn, bf = {}, {}, {}, {}
local checked, nchecked = {}, 0
do
  local k, a, b = 0, 2, 0
  while a <= #ARGV do
    local n, f = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
    b = b + 1
    bk[b], ba[b], bn[b], bf[b] = k, a, n, f
    batches_of[KEYS[k + 2]] = (batches_of[KEYS[k + 2]] or 0) + 1
    nchecked = nchecked + 1
    checked[nchecked] = KEYS[k + 1]
    if f == 2 then
      nchecked = nchecked + 1
      checked[nchecked] = KEYS[k + 5]
      k = k + 5
      a = a + 10 + 2 * tonumber(ARGV[a + 9]) + n
    else
      k = k + 4
      a = a + 5 + f * n
    end
  end
end
-- Every batch's lease (and shard version) in one MGET (read_strings),
-- read before the first batch is decided rather than at the start of
-- each: this script writes neither kind of key and runs atomically, so
-- each batch sees the values it would have read itself. One command
-- instead of one per batch (most of the call's fixed cost at a job or two
-- per shard). And a key of the wrong type fails the whole call before any
-- batch has written a thing, where reading batch by batch would have
-- failed it after the earlier batches had claimed their fires.
local values = read_strings(checked, nchecked)
local v = 0
for b = 1, #bk do
  local f = bf[b]
  local shard_version = nil
  v = v + 1
  local lease_is = values[v]
  if f == 2 then
    v = v + 1
    shard_version = values[v]
  end
  claim(bk[b], ba[b], bn[b], f, lease_is, shard_version)
end
return out
