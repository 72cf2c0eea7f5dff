// npm run bench [-- --rows N --ingest N --collect N --runs N --shape fleets|series --timeline]
// Measures, in one run on one ClickHouse engine:
//  (a) baseline: ClickHouse parsing the CSV itself — INSERT … FORMAT CSVWithNames of the file
//      into a table shaped like `samples` (same order key, codecs and columns; `labels` an ALIAS there as in `samples`);
//  (b) the pipeline: upload → object store → ingest workers → JetStream → collect → ClickHouse,
//      from the first byte uploaded until every row is stored (upload status `done`, then
//      verified with count()).
// Prints rows/s for both, the ratio (b/a), and a per-stage table: CPU seconds and µs per row of
// every process (upload, ingest, collect, ClickHouse, nats-server), peak RSS, and rows/s per CPU
// core for ingest and collect (what one pod gets). --runs N repeats (a)+(b) on the same stack
// (tables emptied in between) and prints min/median/max.
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { uploadFile } from '../../functions/upload/cli.ts';
import { migrations } from '../../shared/migrations.ts';
import { repoRoot, startStack, type Stack } from '../local/stack.ts';
import { generateCsv } from './generate.ts';
import { cpuSeconds, peakRssMiB } from './proc.ts';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    ingest: { type: 'string', default: '2' },
    collect: { type: 'string', default: '1' },
    runs: { type: 'string', default: '1' },
    /** fleets (default): distinct GPUs per copy; series: the same GPUs, 10 s later (generate.ts). */
    shape: { type: 'string', default: 'fleets' },
    keep: { type: 'boolean', default: false },
    /** Print each stage's CPU use second by second during (b): which stage is the critical path when. */
    timeline: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
  },
});

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const STAGES = ['upload', 'ingest', 'collect', 'clickhouse', 'nats-server'] as const;
type Stage = (typeof STAGES)[number];

interface RunResult {
  rows: number;
  baselineSec: number;
  baselineCpu: number;
  pipelineSec: number;
  ratio: number;
  /** CPU seconds per stage during (b), summed over its processes. */
  cpu: Record<Stage, number>;
  /** CPU seconds of this process during (b): the CLI sending the file and polling its status (same machine, not a stage). */
  clientCpu: number;
  /** ClickHouse's own counters (system.events) during (b): where the engine's CPU went. */
  engine: Record<EngineEvent, number>;
}

/** system.events counters read around (b). */
const ENGINE_EVENTS = ['InsertedRows', 'SelectedRows', 'MergedRows', 'MergeTotalMilliseconds', 'UserTimeMicroseconds', 'SystemTimeMicroseconds'] as const;
type EngineEvent = (typeof ENGINE_EVENTS)[number];

async function engineEvents(ch: ClickHouseClient): Promise<Record<EngineEvent, number>> {
  const rs = await ch.query({ query: 'SELECT name, value FROM system.events WHERE name IN {names:Array(String)}', query_params: { names: ENGINE_EVENTS }, format: 'JSONEachRow' });
  const got = new Map(((await rs.json()) as { name: string; value: string }[]).map((e) => [e.name, Number(e.value)]));
  return Object.fromEntries(ENGINE_EVENTS.map((n) => [n, got.get(n) ?? 0])) as Record<EngineEvent, number>;
}

async function count(ch: ClickHouseClient, sql: string): Promise<number> {
  return Number(((await (await ch.query({ query: sql, format: 'JSONEachRow' })).json()) as { n: string }[])[0].n);
}

/** The processes of each stage (a stage may have several, e.g. two ingest workers). */
function stagePids(stack: Stack): Record<Stage, number[]> {
  const of = (fn: string) => stack.processes.filter((p) => p.name.startsWith(`${fn}#`)).map((p) => p.process.pid!);
  return {
    upload: of('upload'),
    ingest: of('ingest'),
    collect: of('collect'),
    clickhouse: [stack.clickhouse.process.pid!],
    'nats-server': [stack.nats.process.pid!],
  };
}

async function baseline(ch: ClickHouseClient, stack: Stack, csv: string, rows: number): Promise<{ sec: number; cpu: number }> {
  // Same table layout as samples, columns named as in the CSV header.
  const ddl = migrations('bench').find((s) => s.includes('.samples ('))!
    .replace('bench.samples', 'bench.direct')
    .replace('model_name LowCardinality', 'modelName LowCardinality')
    .replace('hostname LowCardinality', 'Hostname LowCardinality');
  await ch.command({ query: 'CREATE DATABASE IF NOT EXISTS bench' });
  await ch.command({ query: ddl });
  const pid = stack.clickhouse.process.pid;
  const cpu0 = cpuSeconds(pid);
  const t0 = Date.now();
  await ch.insert({
    table: 'bench.direct',
    columns: ['timestamp', 'metric_name', 'gpu_id', 'device', 'uuid', 'modelName', 'Hostname', 'container', 'pod', 'namespace', 'value', 'labels_raw'],
    format: 'CSVWithNames',
    values: createReadStream(csv, { highWaterMark: 1024 * 1024 }),
    clickhouse_settings: { date_time_input_format: 'best_effort' },
  });
  const sec = (Date.now() - t0) / 1000;
  const cpu = cpuSeconds(pid) - cpu0;
  const direct = await count(ch, 'SELECT count() AS n FROM bench.direct');
  if (direct !== rows) throw new Error(`baseline stored ${direct} rows, expected ${rows}`);
  await ch.command({ query: 'DROP DATABASE bench SYNC' });
  return { sec, cpu };
}

/** Empties the pipeline's tables so every run starts alike (no merges of an earlier run's parts). */
async function emptyTables(ch: ClickHouseClient): Promise<void> {
  const rs = await ch.query({ query: "SELECT name FROM system.tables WHERE database = 'telemetry' AND engine NOT LIKE '%View'", format: 'JSONEachRow' });
  for (const { name } of (await rs.json()) as { name: string }[]) await ch.command({ query: `TRUNCATE TABLE telemetry.\`${name}\`` });
}

async function run(ch: ClickHouseClient, stack: Stack, csv: string, rows: number): Promise<RunResult> {
  const base = await baseline(ch, stack, csv, rows);
  await emptyTables(ch);
  const pids = stagePids(stack);
  const stageCpu = (s: Stage) => pids[s].reduce((n, pid) => n + cpuSeconds(pid), 0);
  const before = Object.fromEntries(STAGES.map((s) => [s, stageCpu(s)])) as Record<Stage, number>;
  const events0 = await engineEvents(ch);
  const client0 = process.cpuUsage();
  const t0 = Date.now();
  const timeline = values.timeline ? sampleTimeline(stageCpu, t0) : undefined;
  const status = await uploadFile(csv, { url: stack.uploadUrl, wait: true, pollMs: 200, out: process.stderr }).finally(() => timeline?.stop());
  const pipelineSec = (Date.now() - t0) / 1000;
  const client = process.cpuUsage(client0);
  const cpu = Object.fromEntries(STAGES.map((s) => [s, stageCpu(s) - before[s]])) as Record<Stage, number>;
  const events1 = await engineEvents(ch);
  const engine = Object.fromEntries(ENGINE_EVENTS.map((n) => [n, events1[n] - events0[n]])) as Record<EngineEvent, number>;
  const stored = await count(ch, 'SELECT count() AS n FROM telemetry.samples');
  if (status.state !== 'done' || stored !== rows) throw new Error(`pipeline ended ${status.state} with ${stored} rows stored, expected ${rows}`);
  return { rows, baselineSec: base.sec, baselineCpu: base.cpu, pipelineSec, ratio: base.sec / pipelineSec, cpu, clientCpu: (client.user + client.system) / 1e6, engine };
}

/**
 * Every second of (b), each stage's share of one core (100 = one core busy), printed when the run
 * ends: shows when ClickHouse, not the functions, is what the pipeline waits for.
 */
function sampleTimeline(stageCpu: (s: Stage) => number, t0: number): { stop(): void } {
  const rows: string[] = [];
  let last = Object.fromEntries(STAGES.map((s) => [s, stageCpu(s)])) as Record<Stage, number>;
  let lastAt = Date.now();
  const timer = setInterval(() => {
    const now = Object.fromEntries(STAGES.map((s) => [s, stageCpu(s)])) as Record<Stage, number>;
    const sec = (Date.now() - lastAt) / 1000;
    const shares = STAGES.map((s) => (100 * (now[s] - last[s])) / sec);
    rows.push(`  ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s ${shares.map((x) => x.toFixed(0).padStart(11)).join('')} ${shares.reduce((a, b) => a + b, 0).toFixed(0).padStart(8)}`);
    last = now;
    lastAt = Date.now();
  }, 1000);
  return {
    stop() {
      clearInterval(timer);
      console.log(`\nCPU by stage during (b), % of one core per second:\n  ${'time'.padStart(6)} ${STAGES.map((s) => s.padStart(11)).join('')} ${'all'.padStart(8)}`);
      for (const row of rows) console.log(row);
    },
  };
}

function report(r: RunResult, stack: Stack): void {
  const pids = stagePids(stack);
  const us = (sec: number) => ((sec * 1e6) / r.rows).toFixed(2);
  console.log(`(a) ClickHouse INSERT … FORMAT CSVWithNames : ${r.baselineSec.toFixed(2)} s  ${fmt(r.rows / r.baselineSec)} rows/s`);
  console.log(`(b) pipeline upload → queryable             : ${r.pipelineSec.toFixed(2)} s  ${fmt(r.rows / r.pipelineSec)} rows/s`);
  console.log(`ratio (b)/(a): ${r.ratio.toFixed(2)}`);
  const total = STAGES.reduce((n, s) => n + r.cpu[s], 0);
  console.log(`\nstage         procs   CPU s   µs/row   peak RSS MiB`);
  for (const s of STAGES) {
    const rss = Math.max(...pids[s].map(peakRssMiB));
    console.log(`  ${s.padEnd(12)} ${String(pids[s].length).padStart(4)} ${r.cpu[s].toFixed(1).padStart(7)} ${us(r.cpu[s]).padStart(8)}   ${rss.toFixed(0).padStart(6)}${s === 'clickhouse' ? ' (engine; covers the baseline too)' : ''}`);
  }
  console.log(`  ${'pipeline'.padEnd(12)} ${''.padStart(4)} ${total.toFixed(1).padStart(7)} ${us(total).padStart(8)}   (${((total / r.pipelineSec / cpus().length) * 100).toFixed(0)}% of ${cpus().length} cores)`);
  console.log(`  ${'baseline (a)'.padEnd(12)} ${'1'.padStart(4)} ${r.baselineCpu.toFixed(1).padStart(7)} ${us(r.baselineCpu).padStart(8)}   ClickHouse alone`);
  console.log(`  ${'client'.padEnd(12)} ${'1'.padStart(4)} ${r.clientCpu.toFixed(1).padStart(7)} ${us(r.clientCpu).padStart(8)}   the CLI sending the file and polling (same cores, not in the pipeline's CPU)`);
  console.log(`pipeline CPU / baseline CPU: ${(total / r.baselineCpu).toFixed(1)}×`);
  console.log(`rows/s per CPU core: ingest ${fmt(r.rows / r.cpu.ingest)}, collect ${fmt(r.rows / r.cpu.collect)} (collect + ClickHouse ${fmt(r.rows / (r.cpu.collect + r.cpu.clickhouse))})`);
  const e = r.engine;
  const perRow = (n: number) => (n / r.rows).toFixed(2);
  console.log(
    `ClickHouse during (b), per file row: rows inserted ${perRow(e.InsertedRows)} (samples, views, rollups), read ${perRow(e.SelectedRows)}, merged ${perRow(e.MergedRows)} ` +
      `(merges ran ${(e.MergeTotalMilliseconds / 1000).toFixed(1)} s, elapsed, summed over merges); thread CPU ${((e.UserTimeMicroseconds + e.SystemTimeMicroseconds) / 1e6).toFixed(1)} s`,
  );
  // ingest logs each part its scanner hands to csv-parse (functions/ingest/index.ts).
  const fallbacks = stack.processes.flatMap((p) => p.output).filter((l) => l.includes('part read by csv-parse')).length;
  console.log(`parts read by csv-parse instead of the scanner (all runs so far): ${fallbacks}`);
  console.log(`BENCH_RESULT ${JSON.stringify(r)}`);
}

function spread(results: RunResult[]): void {
  const stats = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return { min: s[0], median: s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2, max: s[s.length - 1] };
  };
  const line = (name: string, xs: number[], digits: number) => {
    const { min, median, max } = stats(xs);
    console.log(`  ${name.padEnd(26)} ${min.toFixed(digits).padStart(8)} ${median.toFixed(digits).padStart(8)} ${max.toFixed(digits).padStart(8)}`);
  };
  console.log(`\nover ${results.length} runs:            min   median      max`);
  line('ratio (b)/(a)', results.map((r) => r.ratio), 2);
  line('(a) baseline s', results.map((r) => r.baselineSec), 2);
  line('(b) pipeline s', results.map((r) => r.pipelineSec), 2);
  for (const s of STAGES) line(`${s} µs/row`, results.map((r) => (r.cpu[s] * 1e6) / r.rows), 2);
  line('pipeline µs/row', results.map((r) => (STAGES.reduce((n, s) => n + r.cpu[s], 0) * 1e6) / r.rows), 2);
  line('baseline µs/row', results.map((r) => (r.baselineCpu * 1e6) / r.rows), 2);
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'gputel-bench-'));
  const csv = join(work, 'dcgm-large.csv');
  const t0 = Date.now();
  const { rows, bytes } = await generateCsv(join(repoRoot, 'test/fixtures/dcgm_metrics_20250718_134233.csv'), csv, Number(values.rows), values.shape === 'series' ? 'series' : 'fleets');
  console.log(`generated ${fmt(rows)} rows, ${(bytes / 1024 ** 2).toFixed(0)} MiB in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const stack = await startStack({
    dataDir: join(work, 'data'),
    useBundles: process.env.BENCH_USE_TS ? false : true,
    ingestWorkers: Number(values.ingest),
    collectWorkers: Number(values.collect),
    httpFunctions: ['upload'],
    verbose: values.verbose,
  });
  const ch = createClient({ url: stack.clickhouse.url, request_timeout: 600_000 });
  try {
    console.log(`file: ${fmt(rows)} rows, ${(statSync(csv).size / 1024 ** 2).toFixed(0)} MiB; ingest workers ${values.ingest}, collect workers ${values.collect}; ${process.env.BENCH_USE_TS ? 'TypeScript sources (tsx)' : 'esbuild bundles'}`);
    const results: RunResult[] = [];
    for (let i = 0; i < Number(values.runs); i++) {
      console.log(`\n— run ${i + 1} of ${values.runs}`);
      const r = await run(ch, stack, csv, rows);
      report(r, stack);
      results.push(r);
    }
    if (results.length > 1) spread(results);
  } finally {
    await ch.close();
    await stack.stop();
    if (!values.keep) rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
