#!/usr/bin/env node
'use strict';
// Upserts J BullMQ job schedulers `job-0` .. `job-(J-1)`, each
// `{ every: 1000 }` with a template `{ name: 'tick', data: { i } }`, on one
// queue, then exits. Prints one JSON line: how many, how long it took, and
// the first fire instant of each scheduler's first iteration (min/max).
//
//   node producer.js --port P [--host 127.0.0.1] [--queue shardcron-peer]
//                    [--jobs 1000] [--every 1000] [--batch 200]
//                    [--keep-completed 0|1] [--start-ms EPOCH_MS]
//
// Job template options: `removeOnComplete: true, removeOnFail: true` unless
// --keep-completed 1 (BullMQ's own default keeps every finished job in the
// completed set forever: J x 86,400 jobs a day at every: 1000, which no
// deployment at this rate runs with; shardcron keeps no per-fire job either).
//
// With `every` and neither startDate nor offset, the first iteration is due
// at once (nextMillis = now, see worker.js) and the scheduler's phase is
// `upsert time mod every`: the schedulers are spread over the second by the
// time the upserts take (~130 ms for 1000 here), not aligned to whole
// seconds. With --start-ms (run.js --aligned) every scheduler also gets
// `startDate: START_MS` (a whole second a little in the future): the first
// iteration is due at START_MS, the phase is 0 and all J schedulers fire at
// the same whole-second instants, as shardcron's `@every 1s` jobs do.

const { Queue } = require('bullmq');
const { parseOptions, connectionOf } = require('./common');

function parseArgs(argv) {
  return parseOptions(argv, {
    jobs: 1000,
    every: 1000,
    batch: 200,
    'keep-completed': 0,
    'start-ms': 0,
  });
}

async function main() {
  const args = parseArgs(process.argv);
  const queue = new Queue(args.queue, { connection: connectionOf(args) });
  await queue.waitUntilReady();
  const opts = args['keep-completed']
    ? {}
    : { removeOnComplete: true, removeOnFail: true };
  const started = Date.now();
  let firstMin = Infinity;
  let firstMax = -Infinity;
  for (let from = 0; from < args.jobs; from += args.batch) {
    const upserts = [];
    for (let i = from; i < Math.min(args.jobs, from + args.batch); i += 1) {
      upserts.push(
        queue.upsertJobScheduler(
          `job-${i}`,
          args['start-ms'] > 0
            ? { every: args.every, startDate: args['start-ms'] }
            : { every: args.every },
          { name: 'tick', data: { i }, opts },
        ),
      );
    }
    for (const job of await Promise.all(upserts)) {
      // The first iteration's id is `repeat:<id>:<nextMillis>`.
      const millis = Number(String(job && job.id).split(':').pop());
      if (Number.isFinite(millis)) {
        firstMin = Math.min(firstMin, millis);
        firstMax = Math.max(firstMax, millis);
      }
    }
  }
  const count = await queue.getJobSchedulersCount();
  await queue.close();
  console.log(
    JSON.stringify({
      schedulers: count,
      upsert_ms: Date.now() - started,
      first_fire_min_ms: firstMin,
      first_fire_max_ms: firstMax,
      start_date_ms: args['start-ms'] || null,
    }),
  );
  if (count !== args.jobs) {
    throw new Error(`expected ${args.jobs} schedulers, Redis holds ${count}`);
  }
}

main().catch((err) => {
  console.error(`producer: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
