-- Server-side functions: each store operation that must check and write
-- atomically is one call of one of these, so it costs one round trip and
-- runs in one transaction. They mirror the Redis store's Lua scripts case
-- for case (each says which); row locks take the place of Redis's
-- single-threaded script execution. Every function takes its row locks
-- in one global order, each table's rows in key order and up front:
-- lease rows, shard version rows, job rows, fire rows, open entries; member
-- rows (in id order) before the state row, which is always taken last; the
-- ring settings under an advisory lock. So concurrent calls never deadlock.
-- Events go out with pg_notify on the namespace's channel (__CHANNEL__),
-- delivered when the transaction commits.

CREATE OR REPLACE FUNCTION __SCHEMA__.now_ms() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
  SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint
$$;

CREATE OR REPLACE FUNCTION __SCHEMA__.now_us() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
  SELECT floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint
$$;

-- ensure_config.lua: stores the ring settings once; later callers must
-- agree. Returns '{}' when consistent, else {field, stored, given} of the
-- first mismatch (nothing written).
CREATE OR REPLACE FUNCTION __SCHEMA__.check_config(p_fields text[], p_values text[])
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
  i integer;
  stored text;
  missing boolean := false;
BEGIN
  FOR pass IN 1 .. 2 LOOP
    missing := false;
    FOR i IN 1 .. coalesce(array_length(p_fields, 1), 0) LOOP
      SELECT value INTO stored FROM __SCHEMA__.config WHERE field = p_fields[i];
      IF NOT FOUND THEN
        missing := true;
      ELSIF stored <> p_values[i] THEN
        RETURN ARRAY[p_fields[i], stored, p_values[i]];
      END IF;
    END LOOP;
    IF NOT missing THEN
      RETURN ARRAY[]::text[];
    END IF;
    IF pass = 1 THEN
      -- Something to write: serialise writers, then look again. An
      -- advisory lock, not a row lock: it orders after nothing else.
      PERFORM pg_advisory_xact_lock(hashtext('__CHANNEL__:config'));
    END IF;
  END LOOP;
  INSERT INTO __SCHEMA__.config (field, value)
    SELECT f, v FROM unnest(p_fields, p_values) AS u(f, v)
    ON CONFLICT DO NOTHING;
  RETURN ARRAY[]::text[];
END $$;

-- heartbeat.lua: re-asserts the ring settings, then registers or refreshes
-- the member. Returns {is_new, now_ms}, or {-1, field, stored, given}.
CREATE OR REPLACE FUNCTION __SCHEMA__.heartbeat(
  p_id text, p_info text, p_ttl_ms bigint, p_fields text[], p_values text[])
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
  mismatch text[];
  now_ms bigint;
  prev bigint;
  is_new boolean;
BEGIN
  mismatch := __SCHEMA__.check_config(p_fields, p_values);
  IF array_length(mismatch, 1) IS NOT NULL THEN
    RETURN ARRAY['-1'] || mismatch;
  END IF;
  now_ms := __SCHEMA__.now_ms();
  SELECT deadline_ms INTO prev FROM __SCHEMA__.members WHERE node_id = p_id FOR UPDATE;
  is_new := prev IS NULL OR prev <= now_ms;
  INSERT INTO __SCHEMA__.members (node_id, info, deadline_ms)
    VALUES (p_id, p_info, now_ms + p_ttl_ms)
    ON CONFLICT (node_id) DO UPDATE SET info = excluded.info, deadline_ms = excluded.deadline_ms;
  IF is_new THEN
    PERFORM pg_notify('__CHANNEL__', 'member:join:' || p_id);
  END IF;
  RETURN ARRAY[CASE WHEN is_new THEN '1' ELSE '0' END, now_ms::text];
END $$;

-- deregister.lua: removes a member at once.
CREATE OR REPLACE FUNCTION __SCHEMA__.deregister(p_id text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM __SCHEMA__.members WHERE node_id = p_id;
  IF FOUND THEN
    PERFORM pg_notify('__CHANNEL__', 'member:leave:' || p_id);
    RETURN true;
  END IF;
  RETURN false;
END $$;

-- members.lua: drops expired members, refreshes the weights snapshot from
-- the live weights when they changed and the last refresh is at least
-- p_refresh_ms old, and returns what placement needs. p_known_weights /
-- p_known_placement: '' none known, '-' not wanted, else a version.
CREATE OR REPLACE FUNCTION __SCHEMA__.placement_inputs(
  p_known_weights text, p_refresh_ms bigint, p_known_placement text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := __SCHEMA__.now_ms();
  gone text;
  st __SCHEMA__.state%ROWTYPE;
  snap_version bigint := 0;
  included boolean := false;
  v_weights jsonb := '[]'::jsonb;
  v_placement_version bigint := 0;
  v_placement_included boolean := false;
  v_placement text := '';
  v_members jsonb;
BEGIN
  -- Expired members locked in id order first: two nodes listing at once
  -- never deadlock over them.
  PERFORM 1 FROM __SCHEMA__.members WHERE deadline_ms <= v_now ORDER BY node_id FOR UPDATE;
  FOR gone IN
    DELETE FROM __SCHEMA__.members WHERE deadline_ms <= v_now RETURNING node_id
  LOOP
    PERFORM pg_notify('__CHANNEL__', 'member:leave:' || gone);
  END LOOP;
  IF p_known_weights <> '-' THEN
    SELECT * INTO st FROM __SCHEMA__.state;
    IF st.live_weights_version <> st.snapshot_version
       AND v_now - st.snapshot_at_ms >= p_refresh_ms THEN
      SELECT * INTO st FROM __SCHEMA__.state FOR UPDATE;
      IF st.live_weights_version <> st.snapshot_version
         AND v_now - st.snapshot_at_ms >= p_refresh_ms THEN
        DELETE FROM __SCHEMA__.weights_snapshot;
        INSERT INTO __SCHEMA__.weights_snapshot (shard, units)
          SELECT shard, sum(weight) FROM __SCHEMA__.jobs
          GROUP BY shard HAVING sum(weight) > 0;
        UPDATE __SCHEMA__.state
          SET snapshot_version = st.live_weights_version, snapshot_at_ms = v_now;
        st.snapshot_version := st.live_weights_version;
      END IF;
    END IF;
    snap_version := st.snapshot_version;
    IF p_known_weights <> snap_version::text THEN
      included := true;
      SELECT coalesce(jsonb_agg(jsonb_build_array(shard, units) ORDER BY shard), '[]'::jsonb)
        INTO v_weights FROM __SCHEMA__.weights_snapshot;
    END IF;
  END IF;
  IF p_known_placement <> '-' THEN
    SELECT s.placement_version, s.placement INTO v_placement_version, v_placement
      FROM __SCHEMA__.state s;
    IF v_placement_version > 0 AND p_known_placement <> v_placement_version::text THEN
      v_placement_included := true;
    ELSE
      v_placement := '';
    END IF;
  END IF;
  SELECT coalesce(jsonb_agg(jsonb_build_array(node_id, info) ORDER BY node_id), '[]'::jsonb)
    INTO v_members FROM __SCHEMA__.members;
  RETURN jsonb_build_object(
    'now', v_now, 'snapshot_version', snap_version, 'included', included,
    'weights', v_weights, 'placement_version', v_placement_version,
    'placement_included', v_placement_included, 'placement', v_placement,
    'members', v_members);
END $$;

-- acquire.lua, for several shards: a free (or expired) lease gets a new
-- fencing token, one more than the shard's last and at least the server
-- time in microseconds; one already held by p_holder is refreshed and
-- keeps its token. Returns per shard (request order) the token, or -1 and
-- the current holder and token.
CREATE OR REPLACE FUNCTION __SCHEMA__.acquire(p_shards integer[], p_holder text, p_ttl_ms bigint)
RETURNS TABLE (ord bigint, granted bigint, cur_holder text, cur_token bigint)
LANGUAGE plpgsql AS $$
DECLARE
  now_ms bigint := __SCHEMA__.now_ms();
  s integer;
  i bigint := 0;
  l __SCHEMA__.leases%ROWTYPE;
  t bigint;
BEGIN
  INSERT INTO __SCHEMA__.leases (shard)
    SELECT DISTINCT u FROM unnest(p_shards) AS u ORDER BY u ON CONFLICT DO NOTHING;
  -- Lock in shard order, whatever the request order.
  PERFORM 1 FROM __SCHEMA__.leases WHERE shard = ANY (p_shards) ORDER BY shard FOR UPDATE;
  FOREACH s IN ARRAY p_shards LOOP
    i := i + 1;
    SELECT * INTO l FROM __SCHEMA__.leases WHERE shard = s;
    IF l.holder IS NOT NULL AND l.deadline_ms > now_ms THEN
      IF l.holder = p_holder THEN
        UPDATE __SCHEMA__.leases SET deadline_ms = now_ms + p_ttl_ms WHERE shard = s;
        ord := i; granted := l.token; cur_holder := NULL; cur_token := NULL;
      ELSE
        ord := i; granted := -1; cur_holder := l.holder; cur_token := l.token;
      END IF;
    ELSE
      t := greatest(l.fence + 1, __SCHEMA__.now_us());
      UPDATE __SCHEMA__.leases
        SET holder = p_holder, token = t, deadline_ms = now_ms + p_ttl_ms, fence = t
        WHERE shard = s;
      ord := i; granted := t; cur_holder := NULL; cur_token := NULL;
    END IF;
    RETURN NEXT;
  END LOOP;
END $$;

-- release.lua, for several leases: deletes each lease still held by
-- p_holder under its token, and announces it. Returns the released shards.
CREATE OR REPLACE FUNCTION __SCHEMA__.release(p_shards integer[], p_tokens bigint[], p_holder text)
RETURNS SETOF integer LANGUAGE plpgsql AS $$
DECLARE
  now_ms bigint := __SCHEMA__.now_ms();
  s integer;
BEGIN
  -- Lock in shard order, as every writer of lease rows does.
  PERFORM 1 FROM __SCHEMA__.leases WHERE shard = ANY (p_shards) ORDER BY shard FOR UPDATE;
  FOR s IN
    UPDATE __SCHEMA__.leases l SET holder = NULL, deadline_ms = 0
    FROM unnest(p_shards, p_tokens) AS u(shard, token)
    WHERE l.shard = u.shard AND l.token = u.token AND l.holder = p_holder
      AND l.deadline_ms > now_ms
    RETURNING l.shard
  LOOP
    PERFORM pg_notify('__CHANNEL__', 'lease:release:' || s);
    RETURN NEXT s;
  END LOOP;
END $$;

-- Whether p_holder holds shard p_shard's lease under p_token now; locks
-- the lease row (shared) so no acquisition changes it before the caller's
-- transaction ends.
CREATE OR REPLACE FUNCTION __SCHEMA__.lease_is(p_shard integer, p_holder text, p_token bigint, p_now bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM __SCHEMA__.leases
    WHERE shard = p_shard AND holder = p_holder AND token = p_token AND deadline_ms > p_now
    FOR SHARE;
  RETURN FOUND;
END $$;

-- claim.lua, all batches in one call. p_batches: [{shard, holder, token,
-- early (max early ms + claim-ahead), fires: [{job, at, kind, version,
-- attempt, uncertain: [attempt ids as text], track}]}]. Returns per batch
-- [-1] (lease not ours) or [1, code, ...]: 1 claimed, 0 already claimed
-- (or not after the watermark), 2 job changed, 3 not yet due. Per fire, in
-- order: (1) a live fire row of this holder whose attempt is one of
-- `uncertain` is taken over (rewritten with this attempt); (2) the job's
-- version must be the caller's; (3) the fire must not be later than
-- server time + early; (4) the fire row is inserted if absent (or
-- expired); a scheduled fire must also be later than the job's watermark,
-- which it advances. A claimed tracked fire gets its open entry; a trigger
-- claimed or found claimed leaves the queue.
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
        SELECT j.version, j.last_fired_ms INTO jv, v_last FROM __SCHEMA__.jobs j
          WHERE j.job_id = v_job;
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

-- put_job.lua: creates or replaces a job, updates its shard's live weight
-- and announces it. p_expected: NULL any, 0 must not exist, else the
-- version the job must have. The job's version is its shard's counter
-- after this write. active_since_ms is the write time on creation and
-- when a paused job is resumed, else kept. Returns {version, updated_ms,
-- active_since_ms} or {-1, current version or 0}.
CREATE OR REPLACE FUNCTION __SCHEMA__.put_job(
  p_id text, p_shard integer, p_spec text, p_expected bigint, p_paused boolean, p_weight bigint)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
  now_ms bigint;
  prev __SCHEMA__.jobs%ROWTYPE;
  since bigint;
  v bigint;
BEGIN
  -- The shard's counter row serialises the shard's job writes.
  INSERT INTO __SCHEMA__.shard_versions (shard) VALUES (p_shard) ON CONFLICT DO NOTHING;
  PERFORM 1 FROM __SCHEMA__.shard_versions WHERE shard = p_shard FOR UPDATE;
  SELECT * INTO prev FROM __SCHEMA__.jobs WHERE job_id = p_id FOR UPDATE;
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
  IF p_weight <> coalesce(prev.weight, 0) THEN
    UPDATE __SCHEMA__.state SET live_weights_version = live_weights_version + 1;
  END IF;
  PERFORM pg_notify('__CHANNEL__', 'jobs:' || p_shard);
  RETURN ARRAY[v, now_ms, since];
END $$;

-- delete_job.lua: removes a job (with its watermark and trigger instant)
-- and its share of its shard's live weight, and announces it. Returns 1
-- removed, 0 absent, -1 conflict.
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
  IF p_expected IS NOT NULL AND prev.version <> p_expected THEN
    RETURN -1;
  END IF;
  DELETE FROM __SCHEMA__.jobs WHERE job_id = p_id;
  -- Its queued triggers go with it (delete_job.lua); its fire rows stay
  -- until they expire, so a job re-created under the same id never claims
  -- one of them again.
  DELETE FROM __SCHEMA__.triggers WHERE shard = p_shard AND job_id = p_id;
  UPDATE __SCHEMA__.shard_versions SET version = version + 1 WHERE shard = p_shard;
  IF prev.weight > 0 THEN
    UPDATE __SCHEMA__.state SET live_weights_version = live_weights_version + 1;
  END IF;
  PERFORM pg_notify('__CHANNEL__', 'jobs:' || p_shard);
  RETURN 1;
END $$;

-- trigger.lua: queues an extra fire of a job now (past the job's previous
-- trigger if that had the same or a later ms, and past a scheduled fire
-- claimed ahead). Returns its ms, or -1 if the job is absent.
CREATE OR REPLACE FUNCTION __SCHEMA__.trigger_job(p_id text, p_shard integer)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  prev bigint;
  wm bigint;
  at bigint;
BEGIN
  INSERT INTO __SCHEMA__.shard_versions (shard) VALUES (p_shard) ON CONFLICT DO NOTHING;
  PERFORM 1 FROM __SCHEMA__.shard_versions WHERE shard = p_shard FOR UPDATE;
  SELECT last_trigger_ms, last_fired_ms INTO prev, wm FROM __SCHEMA__.jobs WHERE job_id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN -1;
  END IF;
  -- Past the previous trigger and past a scheduled fire claimed ahead
  -- (greatest() skips NULLs), as trigger.lua.
  at := greatest(__SCHEMA__.now_ms(), prev + 1, wm + 1);
  UPDATE __SCHEMA__.jobs SET last_trigger_ms = at WHERE job_id = p_id;
  INSERT INTO __SCHEMA__.triggers (shard, job_id, at_ms) VALUES (p_shard, p_id, at);
  UPDATE __SCHEMA__.shard_versions SET version = version + 1 WHERE shard = p_shard;
  PERFORM pg_notify('__CHANNEL__', 'jobs:' || p_shard);
  RETURN at;
END $$;

-- read_triggers.lua, for several leases: the queued triggers of each shard
-- whose lease p_holder holds under the given token, in queue order;
-- triggers of jobs that no longer exist are dropped.
CREATE OR REPLACE FUNCTION __SCHEMA__.read_triggers(p_shards integer[], p_tokens bigint[], p_holder text)
RETURNS TABLE (o_shard integer, o_job_id text, o_at_ms bigint) LANGUAGE plpgsql AS $$
DECLARE
  now_ms bigint := __SCHEMA__.now_ms();
  i integer;
BEGIN
  -- Lease rows shared in shard order first, as in claim().
  PERFORM 1 FROM __SCHEMA__.leases l WHERE l.shard = ANY (p_shards) ORDER BY l.shard FOR SHARE;
  FOR i IN 1 .. coalesce(array_length(p_shards, 1), 0) LOOP
    CONTINUE WHEN NOT __SCHEMA__.lease_is(p_shards[i], p_holder, p_tokens[i], now_ms);
    DELETE FROM __SCHEMA__.triggers t
      WHERE t.shard = p_shards[i]
        AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobs j WHERE j.job_id = t.job_id);
    RETURN QUERY SELECT t.shard, t.job_id::text, t.at_ms FROM __SCHEMA__.triggers t
      WHERE t.shard = p_shards[i] ORDER BY t.seq;
  END LOOP;
END $$;

-- recover.lua, all batches in one call. p_batches: [{shard, holder, token,
-- fires: [{job, at, seen}]}] where seen is the open entry's value as read
-- (holder|token|delivery|kind, '!' if abandoned). Returns per batch [-1]
-- or [1, r, ...]: 1 if the entry still was exactly as read and now names
-- the caller with one more delivery, not abandoned (its fire row too, so
-- an old holder's lost claim can never take it over), else 0.
CREATE OR REPLACE FUNCTION __SCHEMA__.recover(p_batches jsonb, p_retention_ms bigint)
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
  o __SCHEMA__.open_fires%ROWTYPE;
  code integer;
BEGIN
  -- Lease rows shared in shard order first, as in claim(), then the fire
  -- rows in key order, before any open entry.
  PERFORM 1 FROM __SCHEMA__.leases
    WHERE shard IN (SELECT (x->>'shard')::integer FROM jsonb_array_elements(p_batches) AS x)
    ORDER BY shard FOR SHARE;
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
    codes := jsonb_build_array(1);
    FOR f IN SELECT * FROM jsonb_array_elements(b->'fires') LOOP
      code := 0;
      SELECT * INTO o FROM __SCHEMA__.open_fires e
        WHERE e.shard = v_shard AND e.job_id = f->>'job' AND e.at_ms = (f->>'at')::bigint
        FOR UPDATE;
      IF FOUND AND (o.holder || '|' || o.token || '|' || o.delivery || '|' || o.kind::text
                    || (CASE WHEN o.abandoned THEN '!' ELSE '' END)) = f->>'seen' THEN
        UPDATE __SCHEMA__.open_fires e
          SET holder = v_holder, token = v_token, delivery = o.delivery + 1,
              abandoned = false
          WHERE e.shard = o.shard AND e.job_id = o.job_id AND e.at_ms = o.at_ms;
        INSERT INTO __SCHEMA__.fires AS r
            (job_id, at_ms, shard, kind, holder, token, attempt, expires_ms)
          VALUES (o.job_id, o.at_ms, o.shard, o.kind, v_holder, v_token, '0', v_now + p_retention_ms)
          ON CONFLICT (job_id, at_ms) DO UPDATE
            SET holder = excluded.holder, token = excluded.token, attempt = '0',
                expires_ms = excluded.expires_ms;
        code := 1;
      END IF;
      codes := codes || to_jsonb(code);
    END LOOP;
    v_out := v_out || jsonb_build_array(codes);
  END LOOP;
  RETURN v_out;
END $$;

-- hand_back.lua, all shards in one call. p_fires: [{shard, job, at, kind,
-- token, lost: [attempt ids as text]}]. Per fire: (1) its live fire row
-- holds one of p_holder's lost attempts: the row is rewritten to attempt
-- 'h' under the given token and the fire gets an abandoned open entry of
-- delivery 0 (a tracked claim's own entry of p_holder is marked abandoned
-- instead); 1. (2) the row already reads p_holder with attempt 'h': 1.
-- (3) anything else: nothing written, 0. Shards where something was
-- handed back get a new version and an event.
CREATE OR REPLACE FUNCTION __SCHEMA__.hand_back(p_holder text, p_fires jsonb, p_retention_ms bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_now bigint := __SCHEMA__.now_ms();
  f jsonb;
  v_out jsonb := '[]'::jsonb;
  moved integer[] := ARRAY[]::integer[];
  s integer;
  job text;
  at bigint;
  r __SCHEMA__.fires%ROWTYPE;
  o __SCHEMA__.open_fires%ROWTYPE;
  lost text[];
  code integer;
BEGIN
  -- Lock order: shard version rows, then fire rows, each in key order,
  -- then open entries.
  INSERT INTO __SCHEMA__.shard_versions (shard)
    SELECT DISTINCT (x->>'shard')::integer FROM jsonb_array_elements(p_fires) AS x ORDER BY 1
    ON CONFLICT DO NOTHING;
  PERFORM 1 FROM __SCHEMA__.shard_versions v
    WHERE v.shard IN (SELECT (x->>'shard')::integer FROM jsonb_array_elements(p_fires) AS x)
    ORDER BY v.shard FOR UPDATE;
  PERFORM 1 FROM __SCHEMA__.fires c
    WHERE (c.job_id, c.at_ms) IN (
      SELECT x->>'job', (x->>'at')::bigint FROM jsonb_array_elements(p_fires) AS x)
    ORDER BY c.job_id, c.at_ms FOR UPDATE;
  FOR f IN SELECT * FROM jsonb_array_elements(p_fires) LOOP
    s := (f->>'shard')::integer;
    job := f->>'job';
    at := (f->>'at')::bigint;
    SELECT coalesce(array_agg(x), ARRAY[]::text[]) INTO lost
      FROM jsonb_array_elements_text(f->'lost') AS x;
    code := 0;
    SELECT * INTO r FROM __SCHEMA__.fires c
      WHERE c.job_id = job AND c.at_ms = at AND c.expires_ms > v_now FOR UPDATE;
    IF FOUND AND r.holder = p_holder AND r.attempt = 'h' THEN
      code := 1;
    ELSIF FOUND AND r.holder = p_holder AND r.attempt = ANY (lost) THEN
      UPDATE __SCHEMA__.fires c
        SET token = (f->>'token')::bigint, attempt = 'h', expires_ms = v_now + p_retention_ms
        WHERE c.job_id = job AND c.at_ms = at;
      SELECT * INTO o FROM __SCHEMA__.open_fires e
        WHERE e.shard = s AND e.job_id = job AND e.at_ms = at FOR UPDATE;
      IF NOT FOUND THEN
        INSERT INTO __SCHEMA__.open_fires (shard, job_id, at_ms, holder, token, delivery, kind, abandoned)
          VALUES (s, job, at, p_holder, (f->>'token')::bigint, 0, (f->>'kind')::"char", true);
      ELSIF o.holder = p_holder AND NOT o.abandoned THEN
        UPDATE __SCHEMA__.open_fires e SET abandoned = true
          WHERE e.shard = s AND e.job_id = job AND e.at_ms = at;
      END IF;
      code := 1;
      IF NOT s = ANY (moved) THEN
        moved := moved || s;
      END IF;
    END IF;
    v_out := v_out || to_jsonb(code);
  END LOOP;
  FOREACH s IN ARRAY moved LOOP
    UPDATE __SCHEMA__.shard_versions v SET version = v.version + 1 WHERE v.shard = s;
    PERFORM pg_notify('__CHANNEL__', 'jobs:' || s);
  END LOOP;
  RETURN v_out;
END $$;

-- The run history write and close.lua in one call. p_runs: [{job, at,
-- outcome, record}] oldest first; p_closes: [{shard, job, at, holder,
-- token, delivery, abandon}]; p_hour: the record hour of this write.
-- Rows of the written jobs that are beyond both caps (older than the
-- job's p_job_cap newest and than the namespace's p_ns_cap newest) go.
CREATE OR REPLACE FUNCTION __SCHEMA__.record_and_close(
  p_runs jsonb, p_closes jsonb, p_hour bigint, p_ns_cap integer, p_job_cap integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  c jsonb;
  o __SCHEMA__.open_fires%ROWTYPE;
  oldest_kept bigint;
BEGIN
  -- The fire rows this call touches, in key order, before any open entry.
  PERFORM 1 FROM __SCHEMA__.fires r
    WHERE (r.job_id, r.at_ms) IN (
      SELECT e->>'job', (e->>'at')::bigint FROM jsonb_array_elements(p_runs) AS a(e)
      UNION
      SELECT e->>'job', (e->>'at')::bigint FROM jsonb_array_elements(p_closes) AS a(e))
    ORDER BY r.job_id, r.at_ms FOR UPDATE;
  IF jsonb_array_length(p_runs) > 0 THEN
    INSERT INTO __SCHEMA__.runs (job_id, record)
      SELECT e->>'job', e->>'record'
      FROM jsonb_array_elements(p_runs) WITH ORDINALITY AS a(e, n) ORDER BY n;
    -- A claimed fire's row follows it to the outcome of its run.
    UPDATE __SCHEMA__.fires r SET status = e->>'outcome'
      FROM jsonb_array_elements(p_runs) AS a(e)
      WHERE r.job_id = e->>'job' AND r.at_ms = (e->>'at')::bigint;
    INSERT INTO __SCHEMA__.job_history AS h (job_id, last_hour)
      SELECT DISTINCT e->>'job', p_hour FROM jsonb_array_elements(p_runs) AS a(e)
      ON CONFLICT (job_id) DO UPDATE SET last_hour = excluded.last_hour;
    SELECT seq INTO oldest_kept FROM __SCHEMA__.runs
      ORDER BY seq DESC OFFSET p_ns_cap - 1 LIMIT 1;
    IF oldest_kept IS NOT NULL THEN
      DELETE FROM __SCHEMA__.runs r
        USING (
          SELECT w.job, (SELECT k.seq FROM __SCHEMA__.runs k
                         WHERE k.job_id = w.job AND k.job_visible
                         ORDER BY k.seq DESC OFFSET p_job_cap - 1 LIMIT 1) AS keep_from
          FROM (SELECT DISTINCT e->>'job' AS job FROM jsonb_array_elements(p_runs) AS a(e)) w
        ) t
        WHERE r.job_id = t.job AND r.seq < t.keep_from AND r.seq < oldest_kept;
    END IF;
  END IF;
  FOR c IN SELECT * FROM jsonb_array_elements(p_closes) LOOP
    SELECT * INTO o FROM __SCHEMA__.open_fires e
      WHERE e.shard = (c->>'shard')::integer AND e.job_id = c->>'job'
        AND e.at_ms = (c->>'at')::bigint
      FOR UPDATE;
    CONTINUE WHEN NOT FOUND OR o.holder <> c->>'holder' OR o.token <> (c->>'token')::bigint
      OR o.delivery <> (c->>'delivery')::integer;
    IF (c->>'abandon')::boolean THEN
      UPDATE __SCHEMA__.open_fires e SET abandoned = true
        WHERE e.shard = o.shard AND e.job_id = o.job_id AND e.at_ms = o.at_ms;
    ELSE
      DELETE FROM __SCHEMA__.open_fires e
        WHERE e.shard = o.shard AND e.job_id = o.job_id AND e.at_ms = o.at_ms;
    END IF;
  END LOOP;
END $$;

-- sweep_history.lua's counterpart plus retention, one bounded step: the
-- history of jobs no longer defined whose last write is older than
-- p_cutoff_hour leaves their job's history (at most p_batch jobs); such
-- rows go once they are not among the namespace's p_ns_cap newest either
-- (at most p_batch rows); expired fire rows go (at most p_batch).
CREATE OR REPLACE FUNCTION __SCHEMA__.sweep(p_cutoff_hour bigint, p_ns_cap integer, p_batch integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  oldest_kept bigint;
BEGIN
  WITH gone AS (
    DELETE FROM __SCHEMA__.job_history h
    WHERE h.job_id IN (
      SELECT g.job_id FROM __SCHEMA__.job_history g
      WHERE g.last_hour < p_cutoff_hour
        AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobs j WHERE j.job_id = g.job_id)
      LIMIT p_batch)
    RETURNING h.job_id)
  UPDATE __SCHEMA__.runs r SET job_visible = false
    FROM gone WHERE r.job_id = gone.job_id AND r.job_visible;
  SELECT seq INTO oldest_kept FROM __SCHEMA__.runs ORDER BY seq DESC OFFSET p_ns_cap - 1 LIMIT 1;
  IF oldest_kept IS NOT NULL THEN
    DELETE FROM __SCHEMA__.runs WHERE seq = ANY (ARRAY(
      SELECT seq FROM __SCHEMA__.runs
      WHERE NOT job_visible AND seq < oldest_kept ORDER BY seq LIMIT p_batch));
  END IF;
  DELETE FROM __SCHEMA__.fires WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM __SCHEMA__.fires WHERE expires_ms <= __SCHEMA__.now_ms() LIMIT p_batch));
END $$;
