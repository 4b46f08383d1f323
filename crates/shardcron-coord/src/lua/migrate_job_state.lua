-- Prelude of the scripts that read or write a shard's job versions or
-- trigger instants (acquire, put_job, delete_job, trigger): it is prepended
-- to each of them, so the move below happens inside their atomic step.
-- A shard's job state is one hash (the watermark hash): field `job` is the
-- watermark, `job|v` the job's version, `job|t` the ms of its last trigger
-- and `|t` the latest of those of the shard (`|` cannot occur in a job id),
-- so a claim batch reads what it decides on with one HMGET. Versions before this layout kept the versions in
-- `{ns:s}:jobver` and the trigger instants in `{ns:s}:trigger_at`; the first
-- of these scripts to touch a shard after an upgrade moves them into the
-- state hash and deletes the old hashes. A claim needs no move of its own:
-- its lease was acquired by acquire.lua, which moved them.
local function migrate_job_state(state, old_versions, old_triggers)
  if redis.call('EXISTS', old_versions, old_triggers) == 0 then return end
  local latest = tonumber(redis.call('HGET', state, '|t') or '0')
  for _, old in ipairs({{old_versions, '|v'}, {old_triggers, '|t'}}) do
    local flat = redis.call('HGETALL', old[1])
    for i = 1, #flat, 2 do
      redis.call('HSET', state, flat[i] .. old[2], flat[i + 1])
      if old[2] == '|t' and tonumber(flat[i + 1]) > latest then
        latest = tonumber(flat[i + 1])
        redis.call('HSET', state, '|t', flat[i + 1])
      end
    end
  end
  redis.call('DEL', old_versions, old_triggers)
end
