// npm run bench:query [-- --gpus 10000 --days 7 --metrics 2 --requests 320 --concurrency 32 --memory-gpus 100000 --data DIR --only NAME]
// (--only memory: step 3 alone, no fleet)
// Fleet-scale reads, in one run on one ClickHouse engine (chdb served over HTTP):
//  1. builds a fleet straight in ClickHouse with INSERT … SELECT FROM numbers(): `gpus` GPUs
//     reporting `metrics` metrics every 10 s for `days` days (the inventory and metric stats fill
//     through their views; received now, so raw retention keeps them), then the rollups with INSERT … SELECT (1 m from samples, 1 h from 1 m,
//     1 d from 1 h; the generated samples have no duplicates, so no collapse is needed);
//  2. starts the query function (esbuild bundle, its own process) on that database and, per
//     route, sends `requests` requests from `concurrency` concurrent clients, then the same SQL
//     (the route's own query functions) straight to ClickHouse from this process, and prints
//     p50/p99 of both and the p99 ratio;
//  3. walks `memory-gpus` GPUs (inventory only, another database) with /api/v1/gpus?limit=1000
//     and prints the query process's peak RSS, after walks of 10,000 GPUs and tenfold more each up to it.
// Wrap it in `flock /tmp/gputel-bench.lock` on a shared machine.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ClickHouseClient } from '@clickhouse/client';
import { clickhouseClient } from '../../shared/clickhouse.ts';
import { CLICKHOUSE_TABLES as T } from '../../shared/names.ts';
import { provisionClickHouse } from '../../shared/provision.ts';
import { flagEnv } from '../../functions/query/config.ts';
import { cursorSigner } from '../../functions/query/cursor.ts';
import { fleetService } from '../../functions/query/fleet.ts';
import { gpuSeries } from '../../functions/query/series.ts';
import { gpuSummary, telemetryPage } from '../../functions/query/sql.ts';
import { FUNCTION_MALLOC_ENV, functionCommand, repoRoot } from '../local/stack.ts';
import { freePort } from '../support/ports.ts';
import { startClickHouse } from '../support/servers.ts';
import { cpuSeconds, peakRssMiB, resetPeakRss } from './proc.ts';

const { values } = parseArgs({
  options: {
    gpus: { type: 'string', default: '10000' },
    days: { type: 'string', default: '7' },
    metrics: { type: 'string', default: '2' },
    requests: { type: 'string', default: '320' },
    concurrency: { type: 'string', default: '32' },
    'memory-gpus': { type: 'string', default: '100000' },
    /** Keep ClickHouse's data here and reuse a fleet already built there (skips step 1). */
    data: { type: 'string' },
    /** Only the routes whose name contains this. */
    only: { type: 'string', default: '' },
  },
});
const GPUS = Number(values.gpus);
const DAYS = Number(values.days);
const STEP_S = 10;
const STEPS = (DAYS * 86_400) / STEP_S;
const METRICS = ['DCGM_FI_DEV_GPU_TEMP', 'DCGM_FI_DEV_GPU_UTIL', 'DCGM_FI_DEV_FB_USED', 'DCGM_FI_DEV_XID_ERRORS'].slice(0, Number(values.metrics));
const REQUESTS = Number(values.requests);
const CONCURRENCY = Number(values.concurrency);
const END_MS = Date.UTC(2026, 0, 8);
const START_MS = END_MS - DAYS * 86_400_000;
const DB = 'bench_fleet';
const MEMORY_DB = 'bench_inventory';
const SECRET = 'bench-query-cursor-secret-0123456789abcdef';
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const secs = (t0: number) => ((performance.now() - t0) / 1000).toFixed(1);

/** The fleet's samples for GPUs [from, to): ordered by the table's key so parts merge cheaply. */
function samplesInsert(from: number, to: number): string {
  const per = STEPS * METRICS.length;
  return `INSERT INTO ${DB}.${T.samples}
      (timestamp, metric_name, gpu_id, device, uuid, model_name, hostname, container, pod, namespace, value, labels_raw, upload_id, batch_id, line, received_at)
    SELECT fromUnixTimestamp64Milli(toInt64(${START_MS} + step * ${STEP_S * 1000}), 'UTC') AS timestamp,
      [${METRICS.map((m) => `'${m}'`).join(',')}][m + 1] AS metric_name,
      toString(gpu % 8) AS gpu_id, concat('nvidia', toString(gpu % 8)) AS device,
      concat('GPU-bench-', leftPad(toString(gpu), 6, '0')) AS uuid,
      if(gpu % 3 = 0, 'NVIDIA A100-SXM4-80GB', 'NVIDIA H100 80GB HBM3') AS model_name,
      concat('host-', leftPad(toString(intDiv(gpu, 8)), 5, '0')) AS hostname,
      '' AS container, if(gpu % 50 = 1, 'job-0', '') AS pod, '' AS namespace,
      multiIf(m = 0, 45 + (gpu % 50) + 5 * sin(step / 360), m = 1, if(gpu % 10 = 0, 0, 50 + 40 * sin(step / 100 + gpu)),
              m = 2, if(gpu % 10 = 0 AND gpu % 20 != 0, 4, 30000), if(gpu % 997 = 0 AND step % 5000 = 0, 79, 0)) AS value,
      '' AS labels_raw, 'bench' AS upload_id, concat('bench.', toString(intDiv(gpu, 100))) AS batch_id,
      toUInt32(step) AS line, now64(3, 'UTC') AS received_at
    FROM (SELECT ${from} + intDiv(number, ${per}) AS gpu, intDiv(number, ${METRICS.length}) % ${STEPS} AS step, number % ${METRICS.length} AS m
          FROM numbers(${(to - from) * per}))
    -- every 1,000th GPU went silent an hour before the end (stale)
    WHERE NOT (gpu % 1000 = 7 AND step > ${STEPS - 360})`;
}

const rollupFrom = (target: string, source: string, bucket: string, from: string, cols: { count: string; min: string; max: string; sum: string; last: string; lastTs: string }, where: string) =>
  `INSERT INTO ${DB}.${target}
    SELECT uuid, metric_name, toDateTime(${bucket}(${from}), 'UTC') AS bucket_t,
      ${cols.count}, ${cols.min}, ${cols.max}, ${cols.sum}, ${cols.last}, ${cols.lastTs}, now64(3, 'UTC')
    FROM ${DB}.${source} WHERE ${where} GROUP BY uuid, metric_name, bucket_t`;

async function build(ch: ClickHouseClient): Promise<number> {
  const chunk = Math.max(1, Math.floor(20_000_000 / (STEPS * METRICS.length)));
  let t0 = performance.now();
  for (let from = 0; from < GPUS; from += chunk) {
    await ch.command({ query: samplesInsert(from, Math.min(GPUS, from + chunk)), clickhouse_settings: { max_insert_threads: '2' } });
    process.stdout.write(`\r  samples: GPUs ${fmt(Math.min(GPUS, from + chunk))}/${fmt(GPUS)} (${secs(t0)} s)`);
  }
  const [{ n }] = await (await ch.query({ query: `SELECT count() AS n FROM ${DB}.${T.samples}`, format: 'JSONEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } })).json<{ n: number }>();
  if (n === 0) throw new Error('no samples stored (retention?)');
  console.log(`\n  ${fmt(n)} samples (${fmt(GPUS)} GPUs × ${METRICS.length} metrics × ${DAYS} days at ${STEP_S} s) in ${secs(t0)} s`);
  t0 = performance.now();
  const raw = { count: 'count()', min: 'min(value)', max: 'max(value)', sum: 'sum(value)', last: 'argMax(value, timestamp)', lastTs: 'max(timestamp)' };
  const agg = { count: 'sum(count)', min: 'min(min)', max: 'max(max)', sum: 'sum(sum)', last: 'argMax(last, last_ts)', lastTs: 'max(last_ts)' };
  const settings = { prefer_column_name_to_alias: 1 as const, optimize_aggregation_in_order: 1 as const, max_partitions_per_insert_block: '0' };
  for (let from = 0; from < GPUS; from += chunk) {
    const range = `uuid >= concat('GPU-bench-', leftPad(toString(${from}), 6, '0')) AND uuid < concat('GPU-bench-', leftPad(toString(${from + chunk}), 6, '0'))`;
    await ch.command({ query: rollupFrom(T.rollup1m, T.samples, 'toStartOfMinute', 'timestamp', raw, range), clickhouse_settings: settings });
    process.stdout.write(`\r  rollup_1m: GPUs ${fmt(Math.min(GPUS, from + chunk))}/${fmt(GPUS)} (${secs(t0)} s)`);
  }
  await ch.command({ query: rollupFrom(T.rollup1h, T.rollup1m, 'toStartOfHour', 't', agg, '1'), clickhouse_settings: settings });
  await ch.command({ query: rollupFrom(T.rollup1d, T.rollup1h, 'toStartOfDay', 't', agg, '1'), clickhouse_settings: settings });
  console.log(`\n  rollups (1 m, 1 h, 1 d) in ${secs(t0)} s`);
  return n;
}

function startQuery(clickhouseUrl: string, database: string, port: number): { proc: ChildProcess; url: string } {
  const proc = spawn(process.execPath, functionCommand('query', true), {
    cwd: repoRoot,
    env: {
      ...process.env,
      ...FUNCTION_MALLOC_ENV,
      PORT: String(port),
      CLICKHOUSE_URL: clickhouseUrl,
      CLICKHOUSE_DATABASE: database,
      CURSOR_SECRET: SECRET,
      LOG_LEVEL: 'warn',
      NATS_URL: 'nats://127.0.0.1:1', // reads never use NATS (only /readyz does)
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return { proc, url: `http://127.0.0.1:${port}` };
}

async function waitUp(url: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('query function did not start');
}

/** CPU ms per measured request of the processes (query function, ClickHouse) and of this one (the clients). */
interface CpuPerRequest {
  fn: number;
  ch: number;
  bench: number;
}

async function measure(run: () => Promise<void>, pids: { fn?: number; ch?: number }): Promise<{ p50: number; p99: number; cpu: CpuPerRequest }> {
  // Warm-up at the measured concurrency, for both sides alike: it opens the connections the
  // measured requests reuse (bench → query function → ClickHouse for the API, bench → ClickHouse
  // direct) instead of leaving the first burst of 32 to open them. Sequential requests opened a
  // single one, and sockets idle since the previous route had closed (query function's ClickHouse
  // client after 2 s, fetch's after 4 s), so the API's first burst paid for two hops of new
  // connections and the direct side's for one: the p99 of short routes measured that.
  for (let round = 0; round < 2; round++) await Promise.all(Array.from({ length: CONCURRENCY }, () => run()));
  const times: number[] = [];
  let next = 0;
  const cpu0 = { fn: cpuSeconds(pids.fn), ch: cpuSeconds(pids.ch), bench: process.cpuUsage() };
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < REQUESTS) {
        const t0 = performance.now();
        await run();
        times.push(performance.now() - t0);
      }
    }),
  );
  const bench = process.cpuUsage(cpu0.bench);
  const cpu = {
    fn: pids.fn ? ((cpuSeconds(pids.fn) - cpu0.fn) * 1000) / REQUESTS : 0,
    ch: ((cpuSeconds(pids.ch) - cpu0.ch) * 1000) / REQUESTS,
    bench: (bench.user + bench.system) / 1000 / REQUESTS,
  };
  times.sort((a, b) => a - b);
  const q = (p: number) => times[Math.min(times.length - 1, Math.ceil(p * times.length) - 1)];
  return { p50: q(0.5), p99: q(0.99), cpu };
}

/**
 * One measured API request: the answer read to its last byte (as bytes), a 200, and for GraphQL `data` with no
 * `errors` (graphql-js writes errors first). The body is not parsed: parsing it is the client's
 * work, and the direct side has no such step (its time ends where the query functions return), so
 * parsing here charged the API for work outside it on the machine both sides share.
 */
async function answered(url: string, init?: RequestInit, graphql = false): Promise<void> {
  const res = await fetch(url, init);
  // Bytes, not text: the direct side's rows are not decoded either (telemetry pages are bytes).
  const body = Buffer.from(await res.arrayBuffer());
  if (!res.ok || (graphql && !body.subarray(0, GRAPHQL_DATA.length).equals(GRAPHQL_DATA))) throw new Error(`${url}: ${res.status} ${body.subarray(0, 300).toString()}`);
}
const GRAPHQL_DATA = Buffer.from('{"data":');

async function getJson(url: string, init?: RequestInit): Promise<unknown> {
  const res = await fetch(url, init);
  const body = await res.json();
  if (!res.ok) throw new Error(`${url}: ${res.status} ${JSON.stringify(body).slice(0, 300)}`);
  if ((body as { errors?: unknown }).errors) throw new Error(`${url}: ${JSON.stringify(body).slice(0, 300)}`);
  return body;
}

async function main() {
  const work = values.data ?? mkdtempSync(join(tmpdir(), 'gputel-bench-query-'));
  const clickhouse = await startClickHouse({ dataDir: join(work, 'clickhouse') });
  const ch = clickhouseClient({ CLICKHOUSE_URL: clickhouse.url, CLICKHOUSE_USER: 'default', CLICKHOUSE_PASSWORD: '', CLICKHOUSE_DATABASE: DB }, { database: null });
  const procs: ChildProcess[] = [];
  try {
    if (values.only !== 'memory') await routes(ch, clickhouse.url, clickhouse.process.pid, procs);
    await memoryWalk(ch, clickhouse.url, procs);
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
    await ch.close();
    await clickhouse.stop();
    if (!values.data) rmSync(work, { recursive: true, force: true });
  }
}

/** 1 and 2: the fleet (built unless reused) and every route against its direct SQL. */
async function routes(ch: ClickHouseClient, clickhouseUrl: string, clickhousePid: number | undefined, procs: ChildProcess[]): Promise<void> {
  await provisionClickHouse(ch, DB);
  const [{ n }] = await (await ch.query({ query: `SELECT count() AS n FROM ${DB}.${T.samples}`, format: 'JSONEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } })).json<{ n: number }>();
  if (n > 0) {
    console.log(`reusing the fleet: ${fmt(n)} samples`);
  } else {
    console.log(`building the fleet in ClickHouse (${fmt(GPUS * STEPS * METRICS.length)} samples planned)`);
    await build(ch);
    await ch.command({ query: `OPTIMIZE TABLE ${DB}.${T.gpus} FINAL` });
  }

  const api = startQuery(clickhouseUrl, DB, await freePort());
  procs.push(api.proc);
  await waitUp(api.url);

  const direct = clickhouseClient({ CLICKHOUSE_URL: clickhouseUrl, CLICKHOUSE_USER: 'default', CLICKHOUSE_PASSWORD: '', CLICKHOUSE_DATABASE: DB });
  const fleet = fleetService(flagEnv.parse({}), () => direct, cursorSigner({ current: SECRET }, { maxAgeMs: 86_400_000 }));
  const uuid = 'GPU-bench-000123';
  const hourStart = new Date(END_MS - 3_600_000).toISOString();
  const end = new Date(END_MS).toISOString();
  const dayStart = new Date(END_MS - 86_400_000).toISOString();
  const weekStart = new Date(END_MS - 7 * 86_400_000).toISOString();
  const gql = (query: string) => () =>
    answered(`${api.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify({ query }) }, true);
  const rest = (path: string) => () => answered(api.url + path);
  const routes: { name: string; api: () => Promise<void>; direct: () => Promise<void> }[] = [
    { name: 'gpus page (100, flags)', api: rest('/api/v1/gpus?limit=100'), direct: () => fleet.gpus({}).then(() => undefined) },
    { name: 'gpus filtered (hostname)', api: rest('/api/v1/gpus?hostname=host-00042'), direct: () => fleet.gpus({ hostname: 'host-00042' }).then(() => undefined) },
    { name: 'hosts page (100)', api: rest('/api/v1/hosts'), direct: () => fleet.hosts({}).then(() => undefined) },
    {
      name: 'telemetry 1 h (1000 rows)',
      api: rest(`/api/v1/gpus/${uuid}/telemetry?start_time=${hourStart}&end_time=${end}&limit=1000`),
      direct: () => telemetryPage(direct, { uuid, start: END_MS - 3_600_000, end: END_MS }, { limit: 1000 }).then(() => undefined),
    },
    {
      name: 'summary 24 h',
      api: rest(`/api/v1/gpus/${uuid}/summary?start_time=${dayStart}&end_time=${end}`),
      direct: () => gpuSummary(direct, { uuid, start: END_MS - 86_400_000, end: END_MS }).then(() => undefined),
    },
    {
      name: 'top 24 h (rollup_1h)',
      api: rest(`/api/v1/metrics/${METRICS[0]}/top?start_time=${dayStart}&end_time=${end}&by=max`),
      direct: () => fleet.top(METRICS[0], { start_time: END_MS - 86_400_000, end_time: END_MS, by: 'max', order: 'desc' }).then(() => undefined),
    },
    {
      name: 'series 24 h, step 1m (rollup_1m)',
      api: rest(`/api/v1/gpus/${uuid}/series?metric=${METRICS[0]}&start_time=${dayStart}&end_time=${end}&step=1m`),
      direct: () => gpuSeries(direct, uuid, { metric: [METRICS[0]], start_time: END_MS - 86_400_000, end_time: END_MS, step: 60 }).then(() => undefined),
    },
    {
      name: 'series 7 d, step 1h (rollup_1h)',
      api: rest(`/api/v1/gpus/${uuid}/series?metric=${METRICS[0]}&start_time=${weekStart}&end_time=${end}&step=1h`),
      direct: () => gpuSeries(direct, uuid, { metric: [METRICS[0]], start_time: END_MS - 7 * 86_400_000, end_time: END_MS, step: 3600 }).then(() => undefined),
    },
    { name: 'anomalies (last hour)', api: rest('/api/v1/anomalies'), direct: () => fleet.anomalies({}).then(() => undefined) },
    {
      name: 'GraphQL gpus page (100)',
      api: gql('{ gpus(limit: 100) { gpus { uuid gpu_id device model_name hostname first_seen last_seen samples metrics flags } next_cursor } }'),
      direct: () => fleet.gpus({ limit: 100 }).then(() => undefined),
    },
  ];
  console.log(`\n${REQUESTS} requests per route from ${CONCURRENCY} concurrent clients (ms)`);
  // CPU ms per request (from /proc and process.cpuUsage, 10 ms ticks over all measured requests):
  // what the answer cost the query function, ClickHouse and the clients in this process.
  console.log(
    `| route | API p50 | API p99 | direct p50 | direct p99 | p99 ratio | API CPU ms/req fn · CH · bench | direct CPU ms/req CH · bench |\n|---|---:|---:|---:|---:|---:|---:|---:|`,
  );
  const c = (n: number) => n.toFixed(1);
  for (const r of routes.filter((x) => x.name.includes(values.only!))) {
    const a = await measure(r.api, { fn: api.proc.pid, ch: clickhousePid });
    const d = await measure(r.direct, { ch: clickhousePid });
    console.log(
      `| ${r.name} | ${a.p50.toFixed(1)} | ${a.p99.toFixed(1)} | ${d.p50.toFixed(1)} | ${d.p99.toFixed(1)} | ${(a.p99 / d.p99).toFixed(2)} | ` +
        `${c(a.cpu.fn)} · ${c(a.cpu.ch)} · ${c(a.cpu.bench)} | ${c(d.cpu.ch)} · ${c(d.cpu.bench)} |`,
    );
  }
  // One client, one request at a time: a 7-day chart of one GPU from rollup_1h.
  const single: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t0 = performance.now();
    await getJson(`${api.url}/api/v1/gpus/${uuid}/series?metric=${METRICS.join('&metric=')}&start_time=${weekStart}&end_time=${end}&step=1h`);
    single.push(performance.now() - t0);
  }
  single.sort((a, b) => a - b);
  console.log(`\nsingle request, 7-day series of ${METRICS.length} metrics (step 1h, rollup_1h): p50 ${single[24].toFixed(1)} ms, max ${single[49].toFixed(1)} ms`);
  await direct.close();
  api.proc.kill('SIGTERM');
}

/** 3: the query process's peak RSS walking a large inventory page by page. */
async function memoryWalk(ch: ClickHouseClient, clickhouseUrl: string, procs: ChildProcess[]): Promise<void> {
  const memGpus = Number(values['memory-gpus']);
  await ch.command({ query: `DROP DATABASE IF EXISTS ${MEMORY_DB}` });
  await provisionClickHouse(ch, MEMORY_DB);
  await ch.command({
    query: `INSERT INTO ${MEMORY_DB}.${T.gpus} SELECT concat('GPU-mem-', leftPad(toString(number), 7, '0')), toString(number % 8), 'nvidia0',
      'NVIDIA H100 80GB HBM3', concat('host-', toString(intDiv(number, 8))), toDateTime64('2026-01-01 00:00:00', 3, 'UTC'),
      toDateTime64('2026-01-08 00:00:00', 3, 'UTC'), 60480, ['DCGM_FI_DEV_GPU_TEMP', 'DCGM_FI_DEV_GPU_UTIL'] FROM numbers(${memGpus})`,
  });
  const inv = startQuery(clickhouseUrl, MEMORY_DB, await freePort());
  procs.push(inv.proc);
  await waitUp(inv.url);
  const walk = async (maxGpus: number) => {
    resetPeakRss(inv.proc.pid);
    let cursor: string | null = null;
    let seen = 0;
    const t0 = performance.now();
    do {
      const page = (await getJson(`${inv.url}/api/v1/gpus?limit=1000${cursor ? `&cursor=${cursor}` : ''}`)) as { gpus: unknown[]; next_cursor: string | null };
      seen += page.gpus.length;
      cursor = seen < maxGpus ? page.next_cursor : null;
    } while (cursor);
    return { seen, rss: peakRssMiB(inv.proc.pid), s: secs(t0) };
  };
  // Walks of 10,000 GPUs and tenfold more each time up to memory-gpus, in one process: retention
  // would add the same again at each step; a heap that V8 merely sized up grows less and less.
  const sizes = [Math.min(10_000, memGpus / 10)];
  while (sizes[sizes.length - 1] < memGpus) sizes.push(Math.min(sizes[sizes.length - 1] * 10, memGpus));
  const walks = [];
  for (const gpus of sizes) walks.push(await walk(gpus));
  console.log(`\nquery process peak RSS walking /api/v1/gpus?limit=1000: ${walks.map((w) => `${fmt(w.seen)} GPUs ${w.rss.toFixed(0)} MiB (${w.s} s)`).join('; ')}`);
}

await main();
