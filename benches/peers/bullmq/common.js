'use strict';
// What producer.js and worker.js share: their `--key value` options and the
// rule that both talk only to a private redis-server on a given port.

/**
 * Parses `--key value` pairs of `argv` (process.argv) over `defaults`
 * (a number default makes the option a number) plus `host` (127.0.0.1) and
 * `port` (required). Throws on an unknown or incomplete option, a missing
 * --port, or port 6379 (never the machine's own Redis).
 */
function parseOptions(argv, defaults) {
  const args = { host: '127.0.0.1', port: 0, queue: 'shardcron-peer', ...defaults };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    const value = argv[i + 1];
    if (!(key in args) || value === undefined) {
      throw new Error(`unknown or incomplete option ${argv[i]}`);
    }
    args[key] = typeof args[key] === 'number' ? Number(value) : value;
  }
  if (!Number.isInteger(args.port) || args.port <= 0) {
    throw new Error('--port is required');
  }
  if (args.port === 6379) {
    throw new Error('refusing port 6379: run against a private redis-server');
  }
  return args;
}

/** The BullMQ connection options for the parsed `args`. */
function connectionOf(args) {
  return { host: args.host, port: args.port };
}

module.exports = { parseOptions, connectionOf };
