#!/usr/bin/env node
// BullMQ reference side of paywatch's queue benchmark (`just bench queue`).
//
// Contract: one JSON object on the LAST line of stdout; everything else goes to stderr.
// Exit code 0 on success, non-zero (with a message on stderr) on failure.
// See README.md for what each subcommand measures and the BullMQ options used.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { Worker as Thread, isMainThread, workerData } from 'node:worker_threads';
import { DelayedError, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';

const USAGE = `usage: node bench.mjs <subcommand> [options]

subcommands:
  preload  --jobs N (50000)                          add N no-op jobs (addBulk, chunks of 1000)
  work     --jobs N (50000) --concurrency C (100)    process N already-queued jobs, report throughput
  lateness --jobs N (20000) --spread-ms S (2000) --concurrency C (100) [--producer thread|inline]
                                                     delayed jobs (delay uniform in [0,S) ms), report lateness;
                                                     producer in its own thread (default) or on the worker's loop
  memory   --jobs N (100000) --payload small|order|example Redis used_memory per job delayed 1h, then obliterate
                                                     (small: {i: N}; order: {order_id, provider})
  clean                                              obliterate the queue under the prefix
  e2e-submit --jobs N (20000)                        add N check-payment jobs (the README's example order)
  e2e-worker --sandbox URL --concurrency C (50) --delay-ms D (100)
                                                     poll the sandbox's Cashless bill of each job over HTTP
                                                     (keep-alive); pending: moveToDelayed(now + D); paid: write
                                                     the final record, add 3 notification jobs; runs until killed
  idle-worker --seconds S (30)                       an idle Worker with BullMQ's defaults for S seconds

common options:
  --redis URL     (default $REDIS_URL or redis://127.0.0.1:6379)
  --prefix P      BullMQ key prefix (default bullbench:<random>)
  --queue NAME    (default bench)
  --timeout-s T   fail if the subcommand takes longer than T seconds (default 600, 0 = never)
`;

const CHUNK = 1000;

// ---------------------------------------------------------------------------------------------
// Command line

class UsageError extends Error {}

const SPEC = {
  preload: { jobs: 50000 },
  work: { jobs: 50000, concurrency: 100 },
  lateness: { jobs: 20000, 'spread-ms': 2000, concurrency: 100, producer: 'thread' },
  memory: { jobs: 100000, payload: 'order' },
  clean: {},
  'e2e-submit': { jobs: 20000 },
  'e2e-worker': { sandbox: '', concurrency: 50, 'delay-ms': 100 },
  'idle-worker': { seconds: 30 },
};
const COMMON = ['redis', 'prefix', 'queue', 'timeout-s'];

function parseArgs(argv) {
  if (argv.length === 0 || argv[0] === '-h' || argv[0] === '--help') {
    throw new UsageError('missing subcommand');
  }
  const cmd = argv[0];
  if (!Object.hasOwn(SPEC, cmd)) throw new UsageError(`unknown subcommand: ${cmd}`);
  const allowed = new Set([...Object.keys(SPEC[cmd]), ...COMMON]);
  const raw = {};
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument: ${arg}`);
    let key = arg.slice(2);
    let value;
    const eq = key.indexOf('=');
    if (eq >= 0) {
      value = key.slice(eq + 1);
      key = key.slice(0, eq);
    } else {
      if (i + 1 >= argv.length) throw new UsageError(`option --${key} needs a value`);
      value = argv[++i];
    }
    if (!allowed.has(key)) throw new UsageError(`option --${key} is not valid for ${cmd}`);
    raw[key] = value;
  }

  const opts = {};
  for (const [key, dflt] of Object.entries(SPEC[cmd])) {
    if (!(key in raw)) opts[key] = dflt;
    else if (typeof dflt === 'number') opts[key] = parsePositiveInt(key, raw[key]);
    else opts[key] = raw[key];
  }
  if (opts.payload !== undefined && !['small', 'order', 'example'].includes(opts.payload)) {
    throw new UsageError('--payload must be small, order or example');
  }
  if (opts.producer !== undefined && opts.producer !== 'thread' && opts.producer !== 'inline') {
    throw new UsageError(`--producer must be thread or inline, got ${JSON.stringify(opts.producer)}`);
  }
  opts.redis = raw.redis ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  opts.prefix = raw.prefix ?? `bullbench:${randomBytes(4).toString('hex')}`;
  opts.queue = raw.queue ?? 'bench';
  opts.timeoutS = 'timeout-s' in raw ? parseNonNegativeInt('timeout-s', raw['timeout-s']) : 600;
  if (opts.prefix === '') throw new UsageError('--prefix must not be empty');
  if (opts.queue === '') throw new UsageError('--queue must not be empty');
  return { cmd, opts };
}

function parseNonNegativeInt(name, value) {
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new UsageError(`--${name} is too large`);
  return n;
}

function parsePositiveInt(name, value) {
  const n = parseNonNegativeInt(name, value);
  if (n === 0) throw new UsageError(`--${name} must be > 0`);
  return n;
}

// redis[s]://[[user]:password@]host[:port][/db]  →  ioredis connection options.
// BullMQ builds (and closes) its own ioredis clients from these options.
function connectionFromUrl(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`--redis: not a URL: ${url}`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new UsageError(`--redis: expected redis:// or rediss://, got ${u.protocol}//`);
  }
  const conn = {
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
  };
  if (u.username) conn.username = decodeURIComponent(u.username);
  if (u.password) conn.password = decodeURIComponent(u.password);
  const db = u.pathname.replace(/^\//, '');
  if (db !== '') {
    if (!/^\d+$/.test(db)) throw new UsageError(`--redis: bad database number: ${db}`);
    conn.db = Number(db);
  }
  if (u.protocol === 'rediss:') conn.tls = {};
  return conn;
}

// ---------------------------------------------------------------------------------------------
// Helpers

const log = (...args) => console.error('[bench.mjs]', ...args);

// Everything that holds a connection, so it is closed on success and on failure alike.
const resources = new Set();
function track(resource) {
  resources.add(resource);
  return resource;
}
async function release(resource) {
  if (!resources.delete(resource)) return;
  if (resource instanceof Redis) await resource.quit();
  else await resource.close();
}
async function closeAll() {
  for (const resource of [...resources].reverse()) {
    try {
      await release(resource);
    } catch (err) {
      log('error while closing:', err?.message ?? err);
    }
  }
}

// On the failure paths: close what we can, but never let a stuck close keep the process alive.
function closeAllBounded(ms = 5000) {
  return Promise.race([closeAll(), new Promise(resolve => setTimeout(resolve, ms).unref())]);
}

function newQueue(opts, connection) {
  const queue = track(new Queue(opts.queue, { connection, prefix: opts.prefix }));
  queue.on('error', err => log('queue error:', err?.message ?? err));
  return queue;
}

// Worker options shared by `work` and `lateness`. Everything not listed keeps BullMQ's default
// (drainDelay 5 s, lockDuration 30 s, stalledInterval 30 s, maxStalledCount 1, no metrics,
// no limiter); see README.md.
function workerOptions(opts, connection, concurrency) {
  return {
    connection,
    prefix: opts.prefix,
    concurrency,
    autorun: false,
    removeOnComplete: { count: 0 },
    removeOnFail: { count: 0 },
  };
}

// Runs `processor` in a Worker until `n` jobs have completed. Resolves with the elapsed
// seconds from worker start (after waitUntilReady) to the n-th completion; closes the worker.
async function runWorker(opts, connection, concurrency, n, processor, beforeStart = async () => {}) {
  const worker = track(new Worker(opts.queue, processor, workerOptions(opts, connection, concurrency)));
  worker.on('error', err => log('worker error:', err?.message ?? err));

  let completed = 0;
  let finishedAt = 0;
  let resolveDone;
  let rejectDone;
  const done = new Promise((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  done.catch(() => {}); // awaited below; this only keeps an early failure from counting as unhandled
  worker.on('completed', () => {
    completed += 1;
    if (completed === n) {
      finishedAt = performance.now();
      resolveDone();
    }
  });
  worker.on('failed', (job, err) => {
    rejectDone(new Error(`job ${job?.id} failed: ${err?.message ?? err}`));
  });

  await worker.waitUntilReady();
  const startedAt = performance.now();
  const running = worker.run();
  running.catch(err => rejectDone(err));
  await beforeStart();
  await done;
  await release(worker);
  await running.catch(() => {});
  return (finishedAt - startedAt) / 1000;
}

// Fail fast on an unreachable or wrong Redis: BullMQ's own clients retry forever by design.
async function preflight(connection) {
  const client = new Redis({
    ...connection,
    lazyConnect: true,
    connectTimeout: 5000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  let lastError;
  client.on('error', err => {
    lastError = err;
  });
  try {
    await client.connect();
    await client.ping();
  } catch (err) {
    throw new Error(`cannot reach Redis: ${(lastError ?? err)?.message ?? err}`);
  } finally {
    client.disconnect();
  }
}

function peakRssKb() {
  const status = readFileSync('/proc/self/status', 'utf8');
  const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
  if (!m) throw new Error('VmHWM not found in /proc/self/status');
  return Number(m[1]);
}

async function usedMemory(client) {
  const info = await client.info('memory');
  const m = /^used_memory:(\d+)\r?$/m.exec(info);
  if (!m) throw new Error('used_memory not found in INFO memory');
  return Number(m[1]);
}

// Nearest-rank percentile of an ascending-sorted array.
function percentile(sorted, p) {
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(Math.max(rank, 1), sorted.length) - 1];
}

async function addInChunks(queue, n, makeJob) {
  for (let start = 0; start < n; start += CHUNK) {
    const end = Math.min(start + CHUNK, n);
    const jobs = new Array(end - start);
    for (let i = start; i < end; i++) jobs[i - start] = makeJob(i);
    await queue.addBulk(jobs);
  }
}

// ---------------------------------------------------------------------------------------------
// Subcommands

async function preload(opts, connection) {
  const queue = newQueue(opts, connection);
  await queue.waitUntilReady();
  await addInChunks(queue, opts.jobs, i => ({ name: 'noop', data: { i } }));
  await release(queue);
  return { added: opts.jobs };
}

async function work(opts, connection) {
  const n = opts.jobs;
  // Fail fast instead of waiting forever when the queue holds fewer than N runnable jobs.
  const queue = newQueue(opts, connection);
  const [ready, paused] = await Promise.all([
    queue.getJobCountByTypes('waiting', 'prioritized'),
    queue.isPaused(),
  ]);
  await release(queue);
  if (paused) throw new Error(`queue ${opts.queue} under prefix ${opts.prefix} is paused`);
  if (ready < n) {
    throw new Error(`queue ${opts.queue} under prefix ${opts.prefix} holds ${ready} ready jobs, fewer than --jobs ${n} (run preload first)`);
  }

  const seconds = await runWorker(opts, connection, opts.concurrency, n, async () => {});
  return {
    jobs: n,
    seconds,
    jobs_per_sec: n / seconds,
    peak_rss_kb: peakRssKb(),
  };
}

function latenessJobs(n, spread) {
  return i => ({ name: 'noop', data: { i }, opts: { delay: Math.floor(Math.random() * spread) } });
}

// Adds the lateness jobs from a separate thread with its own event loop and Redis connection, the
// way producers (API servers) and workers are separate in a deployment. On the worker's own event
// loop, building and sending 1000-job batches would keep the worker from fetching for most of the
// add phase, which measures Node's single thread rather than BullMQ's scheduling.
function addFromThread(opts, connection) {
  return new Promise((resolve, reject) => {
    const thread = new Thread(new URL(import.meta.url), {
      workerData: { role: 'lateness-producer', opts, connection },
    });
    let failed = false;
    thread.on('error', err => {
      failed = true;
      reject(new Error(`producer thread: ${err?.message ?? err}`));
    });
    thread.on('exit', code => {
      if (failed) return;
      if (code === 0) resolve();
      else reject(new Error(`producer thread exited with code ${code}`));
    });
  });
}

async function producerThread({ opts, connection }) {
  const queue = newQueue(opts, connection);
  try {
    await queue.waitUntilReady();
    await addInChunks(queue, opts.jobs, latenessJobs(opts.jobs, opts['spread-ms']));
  } finally {
    await closeAll();
  }
}

async function lateness(opts, connection) {
  const n = opts.jobs;
  const samples = new Float64Array(n);
  let seen = 0;

  const processor = async job => {
    const late = Date.now() - (job.timestamp + (job.opts.delay ?? 0));
    if (seen < n) samples[seen] = late;
    seen += 1;
  };

  let addJobs;
  if (opts.producer === 'thread') {
    addJobs = () => addFromThread(opts, connection);
  } else {
    const queue = newQueue(opts, connection);
    await queue.waitUntilReady();
    addJobs = async () => {
      await addInChunks(queue, n, latenessJobs(n, opts['spread-ms']));
      await release(queue);
    };
  }
  await runWorker(opts, connection, opts.concurrency, n, processor, addJobs);
  if (seen !== n) throw new Error(`processor ran ${seen} times for ${n} jobs`);

  const sorted = Array.from(samples).sort((a, b) => a - b);
  let early = 0;
  for (const v of sorted) if (v < 0) early += 1;
  return {
    jobs: n,
    p50_ms: percentile(sorted, 50),
    p99_ms: percentile(sorted, 99),
    max_ms: sorted[n - 1],
    min_ms: sorted[0],
    early,
  };
}

// The job data of the memory scenario; `example` is the README's example order (paywatch's
// measures the same order through its submit function).
function payloadOf(kind, i) {
  if (kind === 'small') return { i };
  if (kind === 'order') return { order_id: `ord-${i}`, provider: 'cashless' };
  return {
    order_id: `shop-${i}`, provider: 'cashless', payment_id: `bill-${i.toString(16)}`,
    notify: { email: 'buyer@example.com', telegram_chat_id: 123456789,
      webhook_url: 'https://shop.example/hooks/paywatch' },
  };
}

async function memory(opts, connection) {
  const n = opts.jobs;
  const client = track(new Redis({ ...connection, lazyConnect: true }));
  client.on('error', err => log('redis error:', err?.message ?? err));
  await client.connect();

  const queue = newQueue(opts, connection);
  await queue.waitUntilReady();

  const before = await usedMemory(client);
  await addInChunks(queue, n, i => ({
    name: 'check-payment',
    data: payloadOf(opts.payload, i),
    opts: { delay: 3_600_000 },
  }));
  const after = await usedMemory(client);

  await queue.obliterate({ force: true });
  await release(queue);
  await release(client);
  return { jobs: n, bytes_per_job: (after - before) / n };
}

async function clean(opts, connection) {
  const queue = newQueue(opts, connection);
  await queue.obliterate({ force: true });
  await release(queue);
  return { cleaned: true, prefix: opts.prefix, queue: opts.queue };
}

// ---------------------------------------------------------------------------------------------
// End to end (paywatch-bench e2e): the same check-payment work paywatch's fleet does.

// The README's example order, as paywatch-bench e2e submits it to paywatch.
function e2eOrder(i) {
  const id = `e2e-${i}`;
  return {
    order_id: id, provider: 'cashless', payment_id: id,
    notify: { email: 'buyer@example.com', telegram_chat_id: 123456789,
      webhook_url: 'https://shop.example/hooks/paywatch' },
  };
}

async function e2eSubmit(opts, connection) {
  const queue = newQueue(opts, connection);
  await queue.waitUntilReady();
  const firstEnqueueMs = Date.now();
  await addInChunks(queue, opts.jobs, i => ({ name: 'check-payment', data: e2eOrder(i) }));
  await release(queue);
  return { added: opts.jobs, first_enqueue_ms: firstEnqueueMs };
}

// GET url over the keep-alive agent; resolves with the parsed JSON body (rejects on non-2xx).
function getJson(agent, url, headers) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers }, res => {
      const chunks = [];
      res.on('data', c => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode < 200 || res.statusCode >= 300) {
          reject(new Error(`GET ${url}: HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
          return;
        }
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(new Error(`GET ${url}: unreadable JSON: ${err.message}`));
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

// The sandbox's default Cashless credentials (docs/sandbox.md), sent as paywatch sends them.
const CASHLESS_AUTH = 'ApiKey sandbox-cashless-key:sandbox-cashless-secret';
const FINAL = new Set(['FULLY_PAID', 'CANCELLED', 'EXPIRED']);
const CHANNELS = ['email', 'telegram', 'webhook'];

async function e2eWorker(opts, connection) {
  if (!opts.sandbox) throw new UsageError('--sandbox URL is required');
  const base = opts.sandbox.replace(/\/$/, '');
  const delay = opts['delay-ms'];
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.concurrency });
  const client = track(new Redis({ ...connection, lazyConnect: true }));
  client.on('error', err => log('redis error:', err?.message ?? err));
  await client.connect();
  const finalKey = `${opts.prefix}:e2e:final`;
  const notify = {};
  for (const channel of CHANNELS) {
    notify[channel] = newQueue({ ...opts, queue: `notify-${channel}` }, connection);
    await notify[channel].waitUntilReady();
  }

  const processor = async (job, token) => {
    const order = job.data;
    const bill = await getJson(agent, `${base}/cashless/api/v3/bills/${encodeURIComponent(order.payment_id)}`,
      { authorization: CASHLESS_AUTH });
    if (!FINAL.has(bill.status)) {
      await job.moveToDelayed(Date.now() + delay, token);
      throw new DelayedError();
    }
    const finalAt = Date.now();
    const status = bill.status === 'FULLY_PAID' ? 'paid' : bill.status.toLowerCase();
    await client.hset(finalKey, order.order_id,
      JSON.stringify({ ...order, status, raw_status: bill.status, final_at: finalAt }));
    const targets = { email: order.notify?.email, telegram: order.notify?.telegram_chat_id,
      webhook: order.notify?.webhook_url };
    for (const channel of CHANNELS) {
      if (targets[channel] === undefined) continue;
      const id = `${order.order_id}:${status}:${channel}`;
      await notify[channel].add('notify', { order_id: order.order_id, status, channel,
        target: targets[channel], occurred_at: finalAt }, { jobId: id });
    }
  };

  const worker = track(new Worker(opts.queue, processor, workerOptions(opts, connection, opts.concurrency)));
  worker.on('error', err => log('worker error:', err?.message ?? err));
  worker.on('failed', (job, err) => log(`job ${job?.id} failed: ${err?.message ?? err}`));
  await worker.waitUntilReady();
  const running = worker.run();
  await client.incr(`${opts.prefix}:e2e:ready`);
  // Runs until the driver kills it; a stop signal ends it cleanly too.
  await new Promise(resolve => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await release(worker);
  await running.catch(() => {});
  agent.destroy();
  return { peak_rss_kb: peakRssKb() };
}

// An idle Worker at BullMQ's defaults, for the idle-cost benchmark (Redis commands per second).
async function idleWorker(opts, connection) {
  const worker = track(new Worker(opts.queue, async () => {}, {
    connection, prefix: opts.prefix, autorun: false,
  }));
  worker.on('error', err => log('worker error:', err?.message ?? err));
  await worker.waitUntilReady();
  const running = worker.run();
  const client = track(new Redis({ ...connection, lazyConnect: true }));
  await client.connect();
  await client.incr(`${opts.prefix}:idle:ready`);
  await release(client);
  await new Promise(resolve => setTimeout(resolve, opts.seconds * 1000));
  await release(worker);
  await running.catch(() => {});
  return { idle_seconds: opts.seconds };
}

const COMMANDS = { preload, work, lateness, memory, clean, 'e2e-submit': e2eSubmit, 'e2e-worker': e2eWorker, 'idle-worker': idleWorker };

// ---------------------------------------------------------------------------------------------

async function main() {
  let cmd, opts, connection;
  try {
    ({ cmd, opts } = parseArgs(process.argv.slice(2)));
    connection = connectionFromUrl(opts.redis);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`bench.mjs: ${err.message}\n\n${USAGE}`);
      process.exit(2);
    }
    throw err;
  }

  let timer;
  if (opts.timeoutS > 0) {
    timer = setTimeout(() => {
      process.stderr.write(`bench.mjs: ${cmd} timed out after ${opts.timeoutS} s\n`);
      closeAllBounded().finally(() => process.exit(1));
    }, opts.timeoutS * 1000);
    timer.unref();
  }

  log(`${cmd} queue=${opts.queue} prefix=${opts.prefix} redis=${redactUrl(opts.redis)}`);
  try {
    await preflight(connection);
    const result = await COMMANDS[cmd](opts, connection);
    await closeAll();
    clearTimeout(timer);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exitCode = 0;
  } catch (err) {
    log(`${cmd} failed:`, err?.stack ?? err);
    await closeAllBounded();
    process.stderr.write(`bench.mjs: ${cmd} failed: ${err?.message ?? err}\n`);
    process.exit(1);
  }
}

function redactUrl(url) {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

if (isMainThread) {
  main();
} else if (workerData?.role === 'lateness-producer') {
  producerThread(workerData).catch(err => {
    throw err; // surfaces as the thread's 'error' event in the main thread
  });
}
