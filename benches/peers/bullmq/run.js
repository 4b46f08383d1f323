#!/usr/bin/env node
'use strict';
// Peer comparison: BullMQ job schedulers (`every: 1000`) measured the way
// `shardcron-bench live` measures shardcron. See README.md.
//
//   node run.js [--jobs 1000] [--workers 4] [--duration 30] [--warmup 10]
//               [--redis-server PATH] [--concurrency 100] [--aligned]
//               [--keep-completed]
//               [--tail-timeout 60] [--out FILE.json] [--keep-tmp]
//
// 1. starts a private redis-server on a free 127.0.0.1 port (asked of the
//    OS) in a fresh directory under os.tmpdir(), with the arguments
//    shardcron-testkit's RedisServer uses (no persistence, defaults else);
// 2. starts K worker processes (worker.js) and waits until each is
//    connected, then runs producer.js (J schedulers `every: 1000`);
// 3. waits --warmup seconds from the first fire, then measures a window
//    [from, from + D s), `from` on a whole second: `INFO all` at `from`
//    and at the end (commandstats, cpu) and each worker process's CPU time;
// 4. waits for the window's tail (until every scheduler's next iteration
//    is at least one period past the window end: BullMQ creates a
//    scheduler's next iteration when it starts the current one, so by then
//    every in-window instant has started or was skipped for good; at most
//    --tail-timeout s), stops the workers, kills redis-server, audits.
//
// Every process it starts is killed at the end, on error and on
// SIGINT/SIGTERM; a detached watchdog kills redis-server and the workers if
// this process itself dies without cleaning up.
//
// Stdout: one markdown table row. Stderr: details. JSON: --out (default
// results/bullmq-<version>-j<J>-k<K>-d<D>[-aligned].json next to this
// file; results/ is git-ignored).
// Exit code 0 when every expected fire ran exactly once, 1 otherwise (as
// shardcron-bench live) or on failure, 2 for bad arguments.

const fs = require('node:fs');
const os = require('node:os');
const net = require('node:net');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
const Redis = require('ioredis');

const HERE = __dirname;
const QUEUE = 'shardcron-peer';
const PREFIX = 'bull';
const EVERY_MS = 1000;
const BULLMQ_VERSION = require('bullmq/package.json').version;
const IOREDIS_VERSION = require('ioredis/package.json').version;

// ---------------------------------------------------------------- arguments

function usage(message) {
  if (message) console.error(`run.js: ${message}`);
  console.error(
    'usage: node run.js [--jobs J] [--workers K] [--duration D] [--warmup W] ' +
      '[--redis-server PATH] [--concurrency C] [--aligned] [--keep-completed] ' +
      '[--tail-timeout S] [--out FILE] [--keep-tmp]',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const args = {
    jobs: 1000,
    workers: 4,
    duration: 30,
    warmup: 10,
    'redis-server': 'redis-server',
    concurrency: 100,
    aligned: false,
    'keep-completed': false,
    'tail-timeout': 60,
    out: null,
    'keep-tmp': false,
  };
  for (let i = 2; i < argv.length; i += 1) {
    const raw = argv[i];
    if (raw === '-h' || raw === '--help') usage();
    const eq = raw.indexOf('=');
    const key = (eq > 0 ? raw.slice(0, eq) : raw).replace(/^--/, '');
    if (!raw.startsWith('--') || !(key in args)) usage(`unknown option ${raw}`);
    if (typeof args[key] === 'boolean') {
      args[key] = true;
      continue;
    }
    const value = eq > 0 ? raw.slice(eq + 1) : argv[++i];
    if (value === undefined) usage(`${raw} needs a value`);
    if (typeof args[key] === 'number') {
      // Accept `30` or `30s` for the durations.
      const n = Number(String(value).replace(/s$/, ''));
      if (!Number.isFinite(n) || n < 0) usage(`${raw}: not a number: ${value}`);
      args[key] = n;
    } else {
      args[key] = value;
    }
  }
  for (const key of ['jobs', 'workers', 'duration', 'concurrency']) {
    if (!Number.isInteger(args[key]) || args[key] < 1) usage(`--${key} must be a positive integer`);
  }
  return args;
}

// ---------------------------------------------------------------- processes

const children = new Set(); // live ChildProcess objects we started
let watchdog = null;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  if (watchdog && watchdog.connected) watchdog.send({ add: child.pid });
  return child;
}

function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function killChild(child, signal = 'SIGTERM', graceMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    child.kill(signal);
  } catch (_) {
    /* already gone */
  }
  if (!(await waitExit(child, graceMs))) {
    try {
      child.kill('SIGKILL');
    } catch (_) {
      /* already gone */
    }
    await waitExit(child, 2000);
  }
}

// Kills the pids it was told about (only if they still look like ours) when
// this process disappears without saying `clear` first.
// It also removes the run's temp dir then (only a shardcron-bullmq-* one).
const WATCHDOG_SOURCE = `
const fs = require('fs');
const pids = new Set();
let dir = null;
process.on('SIGINT', () => {});
process.on('message', (m) => {
  if (m.add) pids.add(m.add);
  if (m.dir && /[\\/]shardcron-bullmq-[^\\/]+$/.test(m.dir)) dir = m.dir;
  if (m.clear) { pids.clear(); dir = null; process.disconnect(); }
});
process.on('disconnect', () => {
  for (const pid of pids) {
    try {
      const cmd = fs.readFileSync('/proc/' + pid + '/cmdline', 'utf8');
      if (/redis-server|worker\\.js/.test(cmd)) process.kill(pid, 'SIGKILL');
    } catch (_) {}
  }
  if (dir) setTimeout(() => { try { fs.rmSync(dir, { recursive: true, force: true }); } catch (_) {} process.exit(0); }, 500);
  else process.exit(0);
});
`;

function startWatchdog() {
  watchdog = spawn(process.execPath, ['-e', WATCHDOG_SOURCE], {
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    detached: true,
  });
  watchdog.unref();
  watchdog.channel && watchdog.channel.unref && watchdog.channel.unref();
}

let cleaning = null;
function cleanup(tmpDir, keepTmp) {
  if (!cleaning) {
    cleaning = (async () => {
      // Workers first (they hold Redis connections), then redis-server.
      const list = [...children];
      const workers = list.filter((c) => c.spawnargs.some((a) => a.endsWith('worker.js')));
      const others = list.filter((c) => !workers.includes(c));
      await Promise.all(workers.map((c) => killChild(c, 'SIGTERM', 5000)));
      await Promise.all(others.map((c) => killChild(c, 'SIGTERM', 5000)));
      if (watchdog && watchdog.connected) {
        await new Promise((resolve) => {
          try {
            watchdog.send({ clear: true }, () => resolve());
          } catch (_) {
            resolve();
          }
          setTimeout(resolve, 1000).unref();
        });
      }
      if (tmpDir && !keepTmp) fs.rmSync(tmpDir, { recursive: true, force: true });
    })();
  }
  return cleaning;
}

async function startRedis(bin, dir) {
  for (let attempt = 1; attempt <= 5; attempt += 1) {
    const port = await freePort();
    if (port === 6379) continue;
    const logfile = path.join(dir, 'redis.log');
    const child = track(
      spawn(
        bin,
        [
          '--bind', '127.0.0.1',
          '--port', String(port),
          '--daemonize', 'no',
          '--protected-mode', 'no', // as shardcron-testkit's RedisServer; bound to 127.0.0.1
          '--save', '',
          '--appendonly', 'no',
          '--dir', dir,
          '--logfile', logfile,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      ),
    );
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    let spawnError = null;
    child.once('error', (e) => (spawnError = e));
    const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    client.on('error', () => {});
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      if (spawnError) throw new Error(`cannot start ${bin}: ${spawnError.message}`);
      if (child.exitCode !== null) break;
      try {
        if (client.status !== 'ready') await client.connect();
        if ((await client.ping()) === 'PONG') {
          client.disconnect();
          return { child, port };
        }
      } catch (_) {
        client.disconnect();
      }
      await sleep(50);
    }
    client.disconnect();
    await killChild(child, 'SIGKILL', 1000);
    const log = fs.existsSync(logfile) ? fs.readFileSync(logfile, 'utf8') : '';
    if (!/Address already in use/.test(log + stderr)) {
      throw new Error(`redis-server on port ${port} did not start:\n${stderr}${log.slice(-2000)}`);
    }
  }
  throw new Error('no free port for redis-server after 5 attempts');
}

function runNode(script, args) {
  return new Promise((resolve, reject) => {
    const child = track(spawn(process.execPath, [path.join(HERE, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] }));
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${script} exited with ${code ?? signal}`));
    });
  });
}

function startWorker(index, port, concurrency, out) {
  const name = `w${index}`;
  const child = track(
    spawn(
      process.execPath,
      [
        path.join(HERE, 'worker.js'),
        '--port', String(port),
        '--queue', QUEUE,
        '--concurrency', String(concurrency),
        '--out', out,
        '--name', name,
      ],
      { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] },
    ),
  );
  child.summary = null;
  child.on('message', (m) => {
    if (m && m.type === 'stopped') child.summary = m;
  });
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} not ready in 30 s`)), 30000);
    child.on('message', (m) => {
      if (m && m.type === 'ready') {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before it was ready`));
    });
  });
  return { child, name, out, ready };
}

async function stopWorker(w) {
  const { child } = w;
  if (child.exitCode !== null) return;
  if (child.connected) child.send({ type: 'stop' });
  if (!(await waitExit(child, 15000))) await killChild(child, 'SIGKILL', 2000);
}

// ---------------------------------------------------------------- counters

let clkTck = 100;
try {
  clkTck = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
} catch (_) {
  /* keep 100 */
}

/** user + system CPU seconds of a process, from /proc (null elsewhere). */
function processCpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / clkTck;
  } catch (_) {
    return null;
  }
}

function parseInfo(text) {
  const commands = {};
  const fields = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (m) {
      commands[m[1]] = Number(m[2]);
      continue;
    }
    const cut = line.indexOf(':');
    if (cut > 0 && !line.startsWith('#')) fields[line.slice(0, cut)] = line.slice(cut + 1);
  }
  return {
    commands,
    cpu: Number(fields.used_cpu_sys) + Number(fields.used_cpu_user),
    usedMemory: Number(fields.used_memory),
  };
}

async function snapshot(client, workerPids) {
  const info = parseInfo(await client.info('all'));
  const cpu = workerPids.map(processCpuSeconds);
  return { atMs: Date.now(), ...info, workerCpu: cpu };
}

// ---------------------------------------------------------------- audit

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil(Math.min(1, Math.max(0, q)) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

function mod(a, n) {
  return ((a % n) + n) % n;
}

/**
 * The fires of the window [fromMs, toMs) (fromMs on a whole second, D whole
 * seconds long). Scheduler s fires at phase_s + k*every; second k of the
 * window (wall-clock second fromMs/1000 + k) holds exactly one of its
 * instants, fromMs + k*1000 + phase_s. Expected = J x D. A run belongs to the
 * window when its scheduled instant is in [fromMs, toMs), whenever it
 * started (the tail wait lets late ones start). As in shardcron-bench
 * (crates/shardcron-bench/src/live/audit.rs): fired = distinct (scheduler,
 * instant) pairs run; misses = expected - fired; duplicates = extra runs of
 * a pair; unexpected = runs at an instant off the scheduler's grid or of an
 * unknown scheduler; lateness = start - scheduled over every run in the
 * window, nearest-rank percentiles.
 */
function audit(records, phases, fromMs, toMs, durationS) {
  const expected = phases.size * durationS;
  const seen = new Map();
  const lateness = [];
  const perSecond = Array.from({ length: durationS }, () => ({ runs: 0, late: [] }));
  let unexpected = 0;
  for (const [sid, scheduled, started] of records) {
    if (scheduled < fromMs || scheduled >= toMs) continue;
    const late = started - scheduled;
    lateness.push(late);
    const second = Math.floor((scheduled - fromMs) / 1000);
    perSecond[second].runs += 1;
    perSecond[second].late.push(late);
    const phase = phases.get(sid);
    if (phase === undefined || mod(scheduled - phase, EVERY_MS) !== 0) {
      unexpected += 1;
      continue;
    }
    const key = `${sid}@${scheduled}`;
    seen.set(key, (seen.get(key) || 0) + 1);
  }
  lateness.sort((a, b) => a - b);
  let duplicates = 0;
  for (const c of seen.values()) duplicates += c - 1;
  const fired = seen.size;
  // Misses per second of the window, and a few examples.
  const missedPerSecond = new Array(durationS).fill(0);
  const missExamples = [];
  if (fired < expected) {
    for (const [sid, phase] of phases) {
      const first = fromMs + mod(phase - fromMs, EVERY_MS);
      for (let at = first; at < toMs; at += EVERY_MS) {
        if (!seen.has(`${sid}@${at}`)) {
          missedPerSecond[Math.floor((at - fromMs) / 1000)] += 1;
          if (missExamples.length < 10) missExamples.push(`${sid}@${at}`);
        }
      }
    }
  }
  return {
    expected,
    fired,
    misses: expected - fired,
    duplicates,
    unexpected,
    lateness: {
      p50_ms: percentile(lateness, 0.5),
      p99_ms: percentile(lateness, 0.99),
      max_ms: lateness.length ? lateness[lateness.length - 1] : null,
      min_ms: lateness.length ? lateness[0] : null,
    },
    miss_examples: missExamples,
    per_second: perSecond.map((s, k) => {
      s.late.sort((a, b) => a - b);
      return {
        second: k,
        runs: s.runs,
        missed: missedPerSecond[k],
        p50_ms: percentile(s.late, 0.5),
        p99_ms: percentile(s.late, 0.99),
        max_ms: s.late.length ? s.late[s.late.length - 1] : null,
      };
    }),
  };
}

function readRecords(files) {
  const records = [];
  let unparsed = 0;
  for (const file of files) {
    if (!fs.existsSync(file)) continue;
    const text = fs.readFileSync(file, 'utf8');
    for (const line of text.split('\n')) {
      if (!line) continue;
      if (line.startsWith('?')) {
        unparsed += 1;
        continue;
      }
      const [sid, scheduled, started] = line.split('\t');
      records.push([sid, Number(scheduled), Number(started)]);
    }
  }
  return { records, unparsed };
}

// ---------------------------------------------------------------- main

async function main() {
  const args = parseArgs(process.argv);
  const J = args.jobs;
  const K = args.workers;
  const D = args.duration;
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcron-bullmq-'));
  const onSignal = (sig) => {
    console.error(`run.js: ${sig}, cleaning up`);
    cleanup(tmpDir, args['keep-tmp']).finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  startWatchdog();
  if (!args['keep-tmp']) watchdog.send({ dir: tmpDir });

  let client = null;
  try {
    const redis = await startRedis(args['redis-server'], tmpDir);
    const port = redis.port;
    const redisVersion = execFileSync(args['redis-server'], ['--version']).toString().trim();
    console.error(`redis-server pid ${redis.child.pid} on 127.0.0.1:${port}, dir ${tmpDir}`);
    client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
    client.on('error', () => {});

    const workers = [];
    for (let i = 0; i < K; i += 1) {
      workers.push(startWorker(i, port, args.concurrency, path.join(tmpDir, `w${i}.tsv`)));
    }
    await Promise.all(workers.map((w) => w.ready));
    console.error(`${K} workers ready (concurrency ${args.concurrency} each)`);

    // --aligned: a common startDate on a whole second far enough away for
    // all upserts to land before it (0.1-0.2 ms per upsert measured here).
    const startMs = args.aligned ? (Math.floor((Date.now() + 2000 + J / 2) / 1000) + 1) * 1000 : 0;
    const produced = JSON.parse(
      (
        await runNode('producer.js', [
          '--port', String(port),
          '--queue', QUEUE,
          '--jobs', String(J),
          '--every', String(EVERY_MS),
          '--keep-completed', args['keep-completed'] ? '1' : '0',
          '--start-ms', String(startMs),
        ])
      ).trim(),
    );
    console.error(
      `upserted ${produced.schedulers} schedulers in ${produced.upsert_ms} ms` +
        `${startMs ? `, first fire at ${startMs}` : ''}; warm-up ${args.warmup} s from the first fire`,
    );
    await sleep(startMs - Date.now()); // --aligned: the warm-up starts at the first fire
    await sleep(args.warmup * 1000);

    // Window on a whole second, at least 200 ms away.
    let fromMs = (Math.floor(Date.now() / 1000) + 1) * 1000;
    if (fromMs - Date.now() < 200) fromMs += 1000;
    const toMs = fromMs + D * 1000;
    const workerPids = workers.map((w) => w.child.pid);
    await sleep(fromMs - Date.now());
    const before = await snapshot(client, workerPids);
    console.error(`window [${fromMs}, ${toMs}) (${D} s) started`);
    await sleep(toMs - Date.now());
    const after = await snapshot(client, workerPids);

    // Tail: every scheduler's newest iteration at least a period past the
    // window end means its last in-window instant has started (or was
    // skipped). O(log N) per poll, after the measured window.
    const repeatKey = `${PREFIX}:${QUEUE}:repeat`;
    const tailDeadline = Date.now() + args['tail-timeout'] * 1000;
    let tailComplete = false;
    let lowestNext = null;
    while (Date.now() < tailDeadline) {
      const [, score] = await client.zrange(repeatKey, 0, 0, 'WITHSCORES');
      lowestNext = Number(score);
      if (lowestNext >= toMs + EVERY_MS) {
        tailComplete = true;
        break;
      }
      await sleep(250);
    }
    await sleep(500); // the workers flush their files every 200 ms
    const tailMs = Date.now() - toMs;

    // Phases: each scheduler's `offset` field (firstMillis mod every,
    // written by addJobScheduler-11.lua and kept by updateJobScheduler's
    // catch-up), else its `repeat` score (newest iteration) mod every.
    const pipeline = client.pipeline();
    for (let i = 0; i < J; i += 1) {
      pipeline.hget(`${PREFIX}:${QUEUE}:repeat:job-${i}`, 'offset');
      pipeline.zscore(repeatKey, `job-${i}`);
    }
    const replies = await pipeline.exec();
    const phases = new Map();
    let phaseMissing = 0;
    let phaseDisagree = 0;
    for (let i = 0; i < J; i += 1) {
      const [offErr, offset] = replies[2 * i];
      const [scoreErr, score] = replies[2 * i + 1];
      const fromScore = !scoreErr && score !== null ? mod(Number(score), EVERY_MS) : null;
      const fromOffset = !offErr && offset !== null ? mod(Number(offset), EVERY_MS) : null;
      const phase = fromOffset ?? fromScore;
      if (phase === null) phaseMissing += 1;
      else phases.set(`job-${i}`, phase);
      if (fromOffset !== null && fromScore !== null && fromOffset !== fromScore) phaseDisagree += 1;
    }
    const schedulersAtEnd = await client.zcard(repeatKey);
    const memory = parseInfo(await client.info('memory')).usedMemory;

    await Promise.all(workers.map(stopWorker));
    client.disconnect();
    client = null;
    await killChild(redis.child, 'SIGTERM', 5000);

    const { records, unparsed } = readRecords(workers.map((w) => w.out));
    const result = audit(records, phases, fromMs, toMs, D);
    if (phaseMissing > 0) {
      // Without its phase a scheduler's instants cannot be placed: all its
      // in-window runs count as unexpected and its D fires as missed.
      result.expected += phaseMissing * D;
      result.misses += phaseMissing * D;
    }

    const commandDeltas = {};
    let commands = 0;
    for (const [name, calls] of Object.entries(after.commands)) {
      if (name === 'info') continue; // the benchmark's own snapshots
      const delta = calls - (before.commands[name] || 0);
      if (delta > 0) {
        commandDeltas[name] = delta;
        commands += delta;
      }
    }
    // Redis 7 counts the calls made inside Lua scripts in commandstats (and
    // in total_commands_processed): commands per fire includes them, as
    // shardcron-bench's figure does for shardcron's scripts. The EVALSHA
    // calls alone (one per script run) are in per_command_per_fire.evalsha.
    const fired = Math.max(1, result.fired);
    const redisCpu = after.cpu - before.cpu;
    const workerCpu = after.workerCpu.every((x) => x !== null)
      ? after.workerCpu.reduce((s, x, i) => s + x - before.workerCpu[i], 0)
      : null;
    const summaries = workers.map((w) => w.child.summary);
    const round = (x, digits) => (x === null ? null : Number(x.toFixed(digits)));

    const report = {
      peer: 'bullmq',
      bullmq: BULLMQ_VERSION,
      ioredis: IOREDIS_VERSION,
      node: process.version,
      redis: redisVersion,
      jobs: J,
      every_ms: EVERY_MS,
      workers: K,
      concurrency: args.concurrency,
      aligned: args.aligned,
      remove_on_complete: !args['keep-completed'],
      warmup_s: args.warmup,
      duration_s: D,
      window_ms: [fromMs, toMs],
      producer: produced,
      tail: { complete: tailComplete, after_window_ms: tailMs, lowest_next_ms: lowestNext },
      schedulers_at_end: schedulersAtEnd,
      phases_missing: phaseMissing,
      phases_offset_vs_score_disagree: phaseDisagree,
      phase_spread_ms: phases.size ? [Math.min(...phases.values()), Math.max(...phases.values())] : null,
      records_total: records.length,
      records_unparsed: unparsed,
      ...result,
      fires_per_s: result.fired / D,
      redis_commands: commands,
      commands_per_fire: commands / fired,
      per_command_per_fire: Object.fromEntries(
        Object.entries(commandDeltas)
          .sort((a, b) => b[1] - a[1])
          .map(([name, calls]) => [name, round(calls / fired, 4)]),
      ),
      redis_cpu_s: redisCpu,
      redis_cpu_s_per_1000_fires: (redisCpu * 1000) / fired,
      worker_cpu_s: workerCpu,
      worker_cpu_s_per_1000_fires: workerCpu === null ? null : (workerCpu * 1000) / fired,
      redis_used_memory_bytes: memory,
      worker_summaries: summaries,
    };
    report.clean = report.misses === 0 && report.duplicates === 0 && report.unexpected === 0;

    const L = result.lateness;
    const row =
      `| bullmq ${BULLMQ_VERSION}${args.aligned ? ', aligned' : ''} | ${J} jobs/s | ${K} workers | ` +
      `${L.p50_ms}/${L.p99_ms}/${L.max_ms} ms | ${result.misses} | ${result.duplicates} | ` +
      `${commands / fired < 100 ? (commands / fired).toFixed(2) : (commands / fired).toFixed(1)} | ` +
      `${((redisCpu * 1000) / fired).toFixed(3)} |`;

    const out =
      args.out ||
      path.join(HERE, 'results', `bullmq-${BULLMQ_VERSION}-j${J}-k${K}-d${D}${args.aligned ? '-aligned' : ''}.json`);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);

    const top = Object.entries(report.per_command_per_fire).slice(0, 8);
    console.error(
      [
        `fires expected / fired      ${result.expected} / ${result.fired} (${report.fires_per_s.toFixed(1)}/s)`,
        `misses / duplicates / unexpected  ${result.misses} / ${result.duplicates} / ${result.unexpected}` +
          (result.miss_examples.length ? `  e.g. ${result.miss_examples.slice(0, 3).join(', ')}` : ''),
        `lateness p50 / p99 / max     ${L.p50_ms} / ${L.p99_ms} / ${L.max_ms} ms (min ${L.min_ms})`,
        `redis commands per fire      ${report.commands_per_fire.toFixed(3)} (commandstats, ${commands})`,
        ...top.map(([name, v]) => `  ${name.padEnd(26)} ${v.toFixed(3)} per fire`),
        `CPU s per 1000 fires         ${report.redis_cpu_s_per_1000_fires.toFixed(4)} redis-server, ` +
          `${workerCpu === null ? 'n/a' : report.worker_cpu_s_per_1000_fires.toFixed(4)} workers (all ${K} processes)`,
        `tail ${tailComplete ? 'complete' : 'INCOMPLETE'} ${tailMs} ms after the window; ` +
          `max in flight per worker ${summaries.map((s) => (s ? s.maxInFlight : '?')).join(',')}; ` +
          `worker errors ${summaries.map((s) => (s ? s.errors : '?')).join(',')}`,
        `json: ${out}`,
        '| peer | rate | workers | lateness p50/p99/max ms | misses | duplicates | cmds/fire | redis CPU s/1k fires |',
        '| --- | --- | --- | --- | --- | --- | --- | --- |',
      ].join('\n'),
    );
    console.log(row);
    return report.clean ? 0 : 1;
  } finally {
    if (client) client.disconnect();
    await cleanup(tmpDir, args['keep-tmp']);
  }
}

main()
  .then((code) => process.exit(code))
  .catch(async (err) => {
    console.error(`run.js: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  });
