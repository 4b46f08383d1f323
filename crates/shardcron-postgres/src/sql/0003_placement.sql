-- Placement per job: a job is stored in the shard of its placement (its
-- ring shard, the leader shard or the broadcast shard), and a placement
-- change moves it there in the writing transaction. The job row keeps its
-- watermark and trigger instant wherever its shard is, so a move carries
-- them; its queued triggers move with it, and both shards' versions move
-- and are announced, so the old owner reloads (and claims nothing more of
-- the job) and the new one loads it.
--
-- Callers pass the shard they found the job in (p_source; NULL: nowhere,
-- or already the target). Every function checks that the job's row still
-- names that shard once it holds the locks, and returns -2 otherwise (a
-- concurrent write moved it): the caller looks again. Shard counter rows
-- are locked in ascending shard order before the job row, as everywhere.

CREATE OR REPLACE FUNCTION __SCHEMA__.put_job(
  p_id text, p_shard integer, p_spec text, p_expected bigint, p_paused boolean, p_weight bigint,
  p_source integer)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
  now_ms bigint;
  prev __SCHEMA__.jobs%ROWTYPE;
  since bigint;
  v bigint;
BEGIN
  INSERT INTO __SCHEMA__.shard_versions (shard)
    SELECT DISTINCT s FROM unnest(ARRAY[p_shard, coalesce(p_source, p_shard)]) AS s ORDER BY 1
    ON CONFLICT DO NOTHING;
  PERFORM 1 FROM __SCHEMA__.shard_versions
    WHERE shard IN (p_shard, coalesce(p_source, p_shard)) ORDER BY shard FOR UPDATE;
  SELECT * INTO prev FROM __SCHEMA__.jobs WHERE job_id = p_id FOR UPDATE;
  IF prev.job_id IS NOT NULL AND prev.shard <> coalesce(p_source, p_shard) THEN
    RETURN ARRAY[-2];
  END IF;
  IF prev.job_id IS NULL AND p_source IS NOT NULL THEN
    RETURN ARRAY[-2];
  END IF;
  IF p_expected IS NOT NULL AND coalesce(prev.version, 0) <> p_expected THEN
    RETURN ARRAY[-1, coalesce(prev.version, 0)];
  END IF;
  now_ms := __SCHEMA__.now_ms();
  since := now_ms;
  IF prev.job_id IS NOT NULL AND NOT (prev.paused AND NOT p_paused) THEN
    since := CASE WHEN prev.active_since_ms > 0 THEN prev.active_since_ms
                  WHEN prev.updated_ms > 0 THEN prev.updated_ms
                  ELSE now_ms END;
  END IF;
  IF prev.job_id IS NOT NULL AND prev.shard <> p_shard THEN
    UPDATE __SCHEMA__.triggers SET shard = p_shard WHERE shard = prev.shard AND job_id = p_id;
    UPDATE __SCHEMA__.shard_versions SET version = version + 1 WHERE shard = prev.shard;
    PERFORM pg_notify('__CHANNEL__', 'jobs:' || prev.shard);
  END IF;
  UPDATE __SCHEMA__.shard_versions SET version = version + 1 WHERE shard = p_shard
    RETURNING version INTO v;
  INSERT INTO __SCHEMA__.jobs AS j
      (job_id, shard, version, record, paused, updated_ms, active_since_ms, weight)
    VALUES (p_id, p_shard, v,
      '{"version":' || v || ',"updated_ms":' || now_ms || ',"active_since_ms":' || since
        || ',"spec":' || p_spec || '}',
      p_paused, now_ms, since, p_weight)
    ON CONFLICT (job_id) DO UPDATE
      SET shard = excluded.shard, version = excluded.version, record = excluded.record,
          paused = excluded.paused, updated_ms = excluded.updated_ms,
          active_since_ms = excluded.active_since_ms, weight = excluded.weight;
  IF p_weight <> coalesce(prev.weight, 0) OR (prev.job_id IS NOT NULL AND prev.shard <> p_shard) THEN
    UPDATE __SCHEMA__.state SET live_weights_version = live_weights_version + 1;
  END IF;
  PERFORM pg_notify('__CHANNEL__', 'jobs:' || p_shard);
  RETURN ARRAY[v, now_ms, since];
END $$;

-- The version of put_job before placements; nothing calls it any more.
DROP FUNCTION IF EXISTS __SCHEMA__.put_job(text, integer, text, bigint, boolean, bigint);

-- delete_job.lua: as before, for the job found in p_shard; -2 if its row
-- names another shard now.
CREATE OR REPLACE FUNCTION __SCHEMA__.delete_job(p_id text, p_shard integer, p_expected bigint)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  prev __SCHEMA__.jobs%ROWTYPE;
BEGIN
  INSERT INTO __SCHEMA__.shard_versions (shard) VALUES (p_shard) ON CONFLICT DO NOTHING;
  PERFORM 1 FROM __SCHEMA__.shard_versions WHERE shard = p_shard FOR UPDATE;
  SELECT * INTO prev FROM __SCHEMA__.jobs WHERE job_id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  IF prev.shard <> p_shard THEN
    RETURN -2;
  END IF;
  IF p_expected IS NOT NULL AND prev.version <> p_expected THEN
    RETURN -1;
  END IF;
  DELETE FROM __SCHEMA__.jobs WHERE job_id = p_id;
  DELETE FROM __SCHEMA__.triggers WHERE shard = p_shard AND job_id = p_id;
  UPDATE __SCHEMA__.shard_versions SET version = version + 1 WHERE shard = p_shard;
  IF prev.weight > 0 THEN
    UPDATE __SCHEMA__.state SET live_weights_version = live_weights_version + 1;
  END IF;
  PERFORM pg_notify('__CHANNEL__', 'jobs:' || p_shard);
  RETURN 1;
END $$;

-- trigger.lua: as before, for the job found in p_shard; -2 if its row
-- names another shard now.
CREATE OR REPLACE FUNCTION __SCHEMA__.trigger_job(p_id text, p_shard integer)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  prev bigint;
  wm bigint;
  at bigint;
  s integer;
BEGIN
  INSERT INTO __SCHEMA__.shard_versions (shard) VALUES (p_shard) ON CONFLICT DO NOTHING;
  PERFORM 1 FROM __SCHEMA__.shard_versions WHERE shard = p_shard FOR UPDATE;
  SELECT last_trigger_ms, last_fired_ms, shard INTO prev, wm, s
    FROM __SCHEMA__.jobs WHERE job_id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN -1;
  END IF;
  IF s <> p_shard THEN
    RETURN -2;
  END IF;
  at := greatest(__SCHEMA__.now_ms(), prev + 1, wm + 1);
  UPDATE __SCHEMA__.jobs SET last_trigger_ms = at WHERE job_id = p_id;
  INSERT INTO __SCHEMA__.triggers (shard, job_id, at_ms) VALUES (p_shard, p_id, at);
  UPDATE __SCHEMA__.shard_versions SET version = version + 1 WHERE shard = p_shard;
  PERFORM pg_notify('__CHANNEL__', 'jobs:' || p_shard);
  RETURN at;
END $$;

-- claim() as in 0002, with one change: a fire's job must be in the
-- batch's shard. Before placements a job's shard followed from its id; now
-- a job moves (or is deleted and re-created in another placement's
-- shard), and the old shard's owner, until it reloads, still claims with a
-- version drawn from the old shard's counter, which the new shard's
-- counter may have drawn too.
CREATE OR REPLACE FUNCTION __SCHEMA__.claim(p_batches jsonb, p_retention_ms bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := __SCHEMA__.now_ms();
  b jsonb;
  f jsonb;
  v_out jsonb := '[]'::jsonb;
  codes jsonb;
  v_shard integer;
  v_holder text;
  v_token bigint;
  latest bigint;
  v_job text;
  v_at bigint;
  v_kind "char";
  v_attempt text;
  uncertain text[];
  code integer;
  cur_holder text;
  cur_attempt text;
  jv bigint;
  v_last bigint;
  found_job boolean;
  landed boolean;
BEGIN
  -- All the call's lease rows, shared, in shard order before any batch:
  -- lease writers lock them exclusively in the same order, so a claim and
  -- a renewal of overlapping shards never deadlock.
  PERFORM 1 FROM __SCHEMA__.leases
    WHERE shard IN (SELECT (x->>'shard')::integer FROM jsonb_array_elements(p_batches) AS x)
    ORDER BY shard FOR SHARE;
  -- Then all the call's job rows, exclusive, in id order, so two claims
  -- with overlapping fires never deadlock either.
  PERFORM 1 FROM __SCHEMA__.jobs j
    WHERE j.job_id IN (
      SELECT y->>'job' FROM jsonb_array_elements(p_batches) AS x,
        jsonb_array_elements(x->'fires') AS y)
    ORDER BY j.job_id FOR UPDATE;
  -- Then the fire rows that exist, in key order: every function that
  -- touches a fire's open entry holds its fire row first.
  PERFORM 1 FROM __SCHEMA__.fires r
    WHERE (r.job_id, r.at_ms) IN (
      SELECT y->>'job', (y->>'at')::bigint FROM jsonb_array_elements(p_batches) AS x,
        jsonb_array_elements(x->'fires') AS y)
    ORDER BY r.job_id, r.at_ms FOR UPDATE;
  FOR b IN SELECT * FROM jsonb_array_elements(p_batches) LOOP
    v_shard := (b->>'shard')::integer;
    v_holder := b->>'holder';
    v_token := (b->>'token')::bigint;
    IF NOT __SCHEMA__.lease_is(v_shard, v_holder, v_token, v_now) THEN
      v_out := v_out || jsonb_build_array(jsonb_build_array(-1));
      CONTINUE;
    END IF;
    latest := v_now + (b->>'early')::bigint;
    codes := jsonb_build_array(1);
    FOR f IN SELECT * FROM jsonb_array_elements(b->'fires') LOOP
      v_job := f->>'job';
      v_at := (f->>'at')::bigint;
      v_kind := (f->>'kind')::"char";
      v_attempt := f->>'attempt';
      code := -1;
      IF jsonb_array_length(f->'uncertain') > 0 THEN
        SELECT array_agg(x) INTO uncertain
          FROM jsonb_array_elements_text(f->'uncertain') AS x;
        SELECT r.holder, r.attempt INTO cur_holder, cur_attempt FROM __SCHEMA__.fires r
          WHERE r.job_id = v_job AND r.at_ms = v_at AND r.expires_ms > v_now FOR UPDATE;
        IF FOUND AND cur_holder = v_holder AND cur_attempt = ANY (uncertain) THEN
          UPDATE __SCHEMA__.fires r
            SET token = v_token, attempt = v_attempt, expires_ms = v_now + p_retention_ms
            WHERE r.job_id = v_job AND r.at_ms = v_at;
          code := 1;
        END IF;
      END IF;
      IF code = -1 THEN
        -- Locked above with the call's other job rows.
        -- In this batch's shard only: versions are drawn per shard, so a
        -- job now in another shard may carry the very version the caller
        -- loaded from this one.
        SELECT j.version, j.last_fired_ms INTO jv, v_last FROM __SCHEMA__.jobs j
          WHERE j.job_id = v_job AND j.shard = v_shard;
        found_job := FOUND;
        IF NOT found_job OR jv <> (f->>'version')::bigint THEN
          code := 2;
        ELSIF v_kind = 's' AND v_at > latest THEN
          -- A trigger's ms is the store's own (trigger_job), never early.
          code := 3;
        ELSE
          code := 0;
          IF v_kind <> 's' OR v_last IS NULL OR v_at > v_last THEN
            INSERT INTO __SCHEMA__.fires AS r
                (job_id, at_ms, shard, kind, holder, token, attempt, expires_ms)
              VALUES (v_job, v_at, v_shard, v_kind, v_holder, v_token, v_attempt, v_now + p_retention_ms)
              ON CONFLICT (job_id, at_ms) DO UPDATE
                SET shard = excluded.shard, kind = excluded.kind, holder = excluded.holder,
                    token = excluded.token, attempt = excluded.attempt,
                    expires_ms = excluded.expires_ms, status = 'claimed'
                WHERE r.expires_ms <= v_now
              RETURNING true INTO landed;
            IF landed THEN
              IF v_kind = 's' THEN
                UPDATE __SCHEMA__.jobs SET last_fired_ms = v_at WHERE job_id = v_job;
              END IF;
              code := 1;
            END IF;
            landed := NULL;
          END IF;
        END IF;
      END IF;
      IF code = 1 AND (f->>'track')::boolean THEN
        INSERT INTO __SCHEMA__.open_fires AS o
            (shard, job_id, at_ms, holder, token, delivery, kind, abandoned)
          VALUES (v_shard, v_job, v_at, v_holder, v_token, 1, v_kind, false)
          ON CONFLICT (shard, job_id, at_ms) DO UPDATE
            SET holder = excluded.holder, token = excluded.token, delivery = 1,
                kind = excluded.kind, abandoned = false;
      END IF;
      IF v_kind = 't' AND code IN (0, 1) THEN
        DELETE FROM __SCHEMA__.triggers t
          WHERE t.seq = (SELECT min(q.seq) FROM __SCHEMA__.triggers q
                         WHERE q.shard = v_shard AND q.job_id = v_job AND q.at_ms = v_at);
      END IF;
      codes := codes || to_jsonb(code);
    END LOOP;
    v_out := v_out || jsonb_build_array(codes);
  END LOOP;
  RETURN v_out;
END $$;
