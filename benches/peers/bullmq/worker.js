#!/usr/bin/env node
'use strict';
// One BullMQ worker process with an in-process no-op processor that records,
// for every job it starts, `<schedulerId>\t<scheduledMs>\t<startedMs>\n` to
// --out (or stdout with --out -).
//
//   node worker.js --port P [--host 127.0.0.1] [--queue shardcron-peer]
//                  [--concurrency 100] [--out FILE] [--name w0]
//
// Started by run.js with an IPC channel: it sends {type:'ready'} once the
// worker is connected, answers {type:'stop'} by closing the worker (waits
// for the jobs in flight), flushing the file and exiting, and exits on its
// own if the parent goes away (IPC disconnect), so no worker outlives a run.
//
// The scheduled instant
// ---------------------
// For a job scheduler with `every`, BullMQ 6.7.6 computes every iteration's
// fire time in Lua and bakes it into the job id; nothing else on the job
// holds it exactly:
//
// * `getJobSchedulerEveryNextMillis(prevMillis, every, now, offset, …)`
//   (node_modules/bullmq/dist/cjs/commands/includes/
//   getJobSchedulerEveryNextMillis.lua; upstream src/commands/includes/)
//   returns `now` for the first iteration (no startDate/offset) and
//   `prevMillis + every` after that (on a catch-up, when that is already in
//   the past, the next slot `floor(now/every)*every + offset` after now: the
//   iterations in between are skipped, i.e. missed). `offset` is the
//   scheduler's phase, `firstMillis mod every`, stored in the scheduler hash.
// * `updateJobScheduler-12.lua` (run from Worker.nextJobFromJobData ->
//   JobScheduler.upsertJobScheduler(..., {override:false}) when the current
//   iteration is moved to active; dist/cjs/classes/worker.js
//   `nextJobFromJobData`, dist/cjs/classes/job-scheduler.js) and, for the
//   first iteration, `addJobScheduler-11.lua` create the next iteration with
//   id `"repeat:" .. jobSchedulerId .. ":" .. nextMillis` (the same string
//   JobScheduler.getSchedulerNextJobId builds in JS), ZADD the scheduler at
//   score nextMillis in the `repeat` sorted set, and store the job with
//   `delay = max(0, nextMillis - now)` and `timestamp = now` (the caller's
//   Date.now()).
//
// So the intended fire time is the number after the last ':' of job.id.
// `job.timestamp + job.opts.delay` equals it only while the iteration is
// created before it is due: when the previous iteration is picked up late,
// the delay is clamped to 0 and timestamp+delay becomes the creation time,
// hiding the lateness (and `job.delay` itself reads 0 once the job has been
// promoted from the delayed set). `job.opts.prevMillis` is not usable
// either: for `every` schedulers the JS side never computes nextMillis (only
// for `pattern`), so the job carries no prevMillis at all. A probe on 6.7.6
// showed e.g. id `repeat:s1:1796448682198`, timestamp 1796448681207,
// opts.delay 991 (sum = the id's millis), delay 0, no prevMillis, scheduler
// offset 198 (= millis mod 1000). job.repeatJobKey is the scheduler id
// (checked against the id's prefix below).
//
// Start time: Date.now() on entry of the processor, i.e. after BullMQ moved
// the job to active and created the scheduler's next iteration (both happen
// before the processor is called): that is when a user handler would start.
//
// Concurrency: default 100 jobs in flight per process (BullMQ's default is
// 1; run.js passes its --concurrency, default 100). Every burst reaches the
// limit (maxInFlight = 100), but the limit is not what holds the fires
// back: lower values start them sooner and higher values start them later.
// That is how BullMQ 6.7.6 orders work (Worker.mainLoop,
// dist/cjs/classes/worker.js). While fewer than `concurrency` jobs are held
// and due jobs keep coming, the worker fetches them one by one, awaiting
// each fetch (moveToActive, then updateJobScheduler for the next iteration),
// before it hands the first one to the processor. So in a burst the starts
// queue behind up to `concurrency` fetches, and at the extreme (c=2000) the
// next iterations are created late as well, which shows up as misses.
// Sweep, K=4, D=30 s, all due at once (--aligned), quiet 2-core machine,
// lateness p50/p99/max ms (misses), cmds/fire:
//   J=1000: c=10 130/223/252 (0) 42.3, c=100 170/253/269 (0) 44.8,
//           c=500 251/294/312 (0) 49.2
//   J=5000: c=20 359/654/700 (0) 42.1, c=100 394/694/740 (0) 42.6,
//           c=500 559/839/913 (0) 44.3, c=2000 847/1030/1321 (40) 47.5
// (With another benchmark taking one core, the same sweep at J=5000 went
// from 293 misses at c=20 to 44,396 at c=2000.)
// 100, the low end of "high enough" (100-500), is the default. Raising it
// never helped, and going further down helps only a little. The peak number
// of jobs between 'active' and 'completed'/'failed' is reported on stop as
// maxInFlight.

const fs = require('node:fs');
const { Worker } = require('bullmq');
const { parseOptions, connectionOf } = require('./common');

function parseArgs(argv) {
  return parseOptions(argv, {
    concurrency: 100,
    out: '-',
    name: `w${process.pid}`,
  });
}

/** `repeat:<schedulerId>:<millis>` -> [schedulerId, millis] (ids may hold ':'). */
function parseSchedulerJobId(id) {
  if (typeof id !== 'string' || !id.startsWith('repeat:')) {
    return null;
  }
  const cut = id.lastIndexOf(':');
  const millis = Number(id.slice(cut + 1));
  if (cut <= 'repeat:'.length || !Number.isFinite(millis)) {
    return null;
  }
  return [id.slice('repeat:'.length, cut), millis];
}

async function main() {
  const args = parseArgs(process.argv);
  const toStdout = args.out === '-';
  const fd = toStdout ? 1 : fs.openSync(args.out, 'w');
  let buffer = [];
  let recorded = 0;
  let unparsed = 0;
  let errors = 0;
  let inFlight = 0;
  let maxInFlight = 0;

  const flush = () => {
    if (buffer.length > 0) {
      fs.writeSync(fd, buffer.join(''));
      buffer = [];
    }
  };
  const flusher = setInterval(flush, 200);

  const worker = new Worker(
    args.queue,
    // The no-op handler: record and return.
    async (job) => {
      const startedMs = Date.now();
      const parsed = parseSchedulerJobId(job.id);
      if (parsed && (!job.repeatJobKey || job.repeatJobKey === parsed[0])) {
        buffer.push(`${parsed[0]}\t${parsed[1]}\t${startedMs}\n`);
        recorded += 1;
      } else {
        buffer.push(`?${job.id}\t0\t${startedMs}\n`);
        unparsed += 1;
      }
    },
    {
      connection: connectionOf(args),
      concurrency: args.concurrency,
      name: args.name,
    },
  );
  worker.on('active', () => {
    inFlight += 1;
    if (inFlight > maxInFlight) maxInFlight = inFlight;
  });
  const done = () => {
    inFlight -= 1;
  };
  worker.on('completed', done);
  worker.on('failed', done);
  worker.on('error', (err) => {
    errors += 1;
    if (errors <= 5) console.error(`[${args.name}] worker error: ${err && err.message}`);
  });

  let stopping = false;
  const stop = async (code) => {
    if (stopping) return;
    stopping = true;
    try {
      await Promise.race([worker.close(), new Promise((r) => setTimeout(r, 8000))]);
    } catch (err) {
      console.error(`[${args.name}] close: ${err && err.message}`);
    }
    clearInterval(flusher);
    flush();
    if (!toStdout) fs.closeSync(fd);
    const summary = { type: 'stopped', name: args.name, recorded, unparsed, errors, maxInFlight };
    if (process.send && process.connected) {
      process.send(summary, () => process.exit(code));
    } else {
      process.exit(code);
    }
  };

  process.on('message', (msg) => {
    if (msg && msg.type === 'stop') stop(0);
  });
  // Parent gone (crashed or killed): do not linger.
  process.on('disconnect', () => stop(0));
  process.on('SIGTERM', () => stop(0));
  process.on('SIGINT', () => stop(0));

  await worker.waitUntilReady();
  if (process.send) process.send({ type: 'ready', name: args.name, pid: process.pid });
}

main().catch((err) => {
  console.error(`worker: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
