// npm run bench [-- --rows N --ingest N --collect N]
// Measures, in one run on one ClickHouse engine:
//  (a) baseline: ClickHouse parsing the CSV itself — INSERT … FORMAT CSVWithNames of the file
//      into a table shaped like `samples` (same order key, codecs and labels map);
//  (b) the pipeline: upload → object store → ingest workers → JetStream → collect → ClickHouse,
//      from the first byte uploaded until every row is stored (upload status `done`, then
//      verified with count()).
// Prints rows/s for both, the ratio (b/a) and each function process's peak RSS (VmHWM).
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createClient } from '@clickhouse/client';
import { uploadFile } from '../../functions/upload/cli.ts';
import { migrations } from '../../shared/migrations.ts';
import { repoRoot, startStack } from '../local/stack.ts';
import { generateCsv } from './generate.ts';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    ingest: { type: 'string', default: '2' },
    collect: { type: 'string', default: '1' },
    keep: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
  },
});

function peakRssMiB(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** User+system CPU seconds a process has used so far. */
function cpuSeconds(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100 Hz)
  } catch {
    return NaN;
  }
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'gputel-bench-'));
  const csv = join(work, 'dcgm-large.csv');
  const t0 = Date.now();
  const { rows, bytes } = await generateCsv(join(repoRoot, 'test/fixtures/dcgm_metrics_20250718_134233.csv'), csv, Number(values.rows));
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
    // (a) baseline: same table layout as samples, columns named as in the CSV header.
    const ddl = migrations('bench').find((s) => s.includes('.samples ('))!
      .replace('bench.samples', 'bench.direct')
      .replace('model_name LowCardinality', 'modelName LowCardinality')
      .replace('hostname LowCardinality', 'Hostname LowCardinality');
    await ch.command({ query: 'CREATE DATABASE IF NOT EXISTS bench' });
    await ch.command({ query: ddl });
    const chPid = stack.clickhouse.process.pid;
    const baseCpu0 = cpuSeconds(chPid);
    const b0 = Date.now();
    await ch.insert({
      table: 'bench.direct',
      columns: ['timestamp', 'metric_name', 'gpu_id', 'device', 'uuid', 'modelName', 'Hostname', 'container', 'pod', 'namespace', 'value', 'labels_raw'],
      format: 'CSVWithNames',
      values: createReadStream(csv, { highWaterMark: 1024 * 1024 }),
      clickhouse_settings: { date_time_input_format: 'best_effort' },
    });
    const baselineSec = (Date.now() - b0) / 1000;
    const baselineCpu = cpuSeconds(chPid) - baseCpu0;
    const direct = Number(((await (await ch.query({ query: 'SELECT count() AS n FROM bench.direct', format: 'JSONEachRow' })).json()) as { n: string }[])[0].n);
    if (direct !== rows) throw new Error(`baseline stored ${direct} rows, expected ${rows}`);
    await ch.command({ query: 'DROP DATABASE bench SYNC' });

    // (b) the pipeline, end to end.
    const pids = [...stack.processes.map((p) => p.process.pid), stack.clickhouse.process.pid, stack.nats.process.pid];
    const cpuBefore = new Map(pids.map((pid) => [pid, cpuSeconds(pid)]));
    const p0 = Date.now();
    const status = await uploadFile(csv, { url: stack.uploadUrl, wait: true, pollMs: 200, out: process.stderr });
    const pipelineSec = (Date.now() - p0) / 1000;
    const stored = Number(((await (await ch.query({ query: 'SELECT count() AS n FROM telemetry.samples', format: 'JSONEachRow' })).json()) as { n: string }[])[0].n);
    if (status.state !== 'done' || stored !== rows) throw new Error(`pipeline ended ${status.state} with ${stored} rows stored, expected ${rows}`);

    const baseRate = rows / baselineSec;
    const pipeRate = rows / pipelineSec;
    console.log(`\nfile: ${fmt(rows)} rows, ${(statSync(csv).size / 1024 ** 2).toFixed(0)} MiB; ingest workers ${values.ingest}, collect workers ${values.collect}; ${process.env.BENCH_USE_TS ? 'TypeScript sources (tsx)' : 'esbuild bundles'}`);
    console.log(`(a) ClickHouse INSERT … FORMAT CSVWithNames : ${baselineSec.toFixed(2)} s  ${fmt(baseRate)} rows/s`);
    console.log(`(b) pipeline upload → queryable             : ${pipelineSec.toFixed(2)} s  ${fmt(pipeRate)} rows/s`);
    console.log(`ratio (b)/(a): ${(pipeRate / baseRate).toFixed(2)}`);
    const pipelineCpu = pids.reduce<number>((n, pid) => n + cpuSeconds(pid) - (cpuBefore.get(pid) ?? 0), 0);
    console.log(`CPU seconds: (a) ${baselineCpu.toFixed(1)} s in ClickHouse; (b) ${pipelineCpu.toFixed(1)} s over all processes (${((pipelineCpu / pipelineSec / cpus().length) * 100).toFixed(0)}% of ${cpus().length} cores)`);
    console.log('per process: peak RSS (VmHWM) and CPU seconds used during the pipeline run:');
    const row = (name: string, pid: number | undefined, note = '') =>
      console.log(`  ${name.padEnd(11)} ${peakRssMiB(pid).toFixed(0).padStart(5)} MiB  ${(cpuSeconds(pid) - (cpuBefore.get(pid) ?? 0)).toFixed(1).padStart(6)} s CPU${note}`);
    for (const p of stack.processes) row(p.name, p.process.pid);
    row('clickhouse', stack.clickhouse.process.pid, '  (engine; its peak RSS covers both runs)');
    row('nats-server', stack.nats.process.pid);
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

