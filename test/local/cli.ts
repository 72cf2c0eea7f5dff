// Local command line: `npm run demo`, `npm run dev`, `npm run cli -- <command>`.
//   demo                      start a fresh stack, upload the bundled DCGM sample, show results, stop
//   up [--ingest N] [--collect N] [--autoscale] [--data DIR]
//                             keep the stack running (Ctrl-C stops it) and print the URLs
//   upload FILE [--wait] [--url URL] [--token T] [--restamp]
//                             stream a CSV to the upload function, with progress
//   provision                 create streams, consumers, buckets and tables (env: NATS_URL, CLICKHOUSE_*)
//   autoscale                 = up --autoscale: workers follow keda/ ScaledObjects on consumer lag
//   status [--data DIR]       autoscaler status: replicas, lag and last decision per function
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { uploadFile } from '../../functions/upload/cli.ts';
import { provisionAll } from '../../shared/provision-main.ts';
import { repoRoot, startStack, type Stack } from './stack.ts';

const FIXTURE = join(repoRoot, 'test', 'fixtures', 'dcgm_metrics_20250718_134233.csv');

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    wait: { type: 'boolean', default: false },
    url: { type: 'string' },
    token: { type: 'string' },
    restamp: { type: 'boolean', default: false },
    ingest: { type: 'string' },
    collect: { type: 'string' },
    autoscale: { type: 'boolean', default: false },
    data: { type: 'string' },
    'upload-port': { type: 'string' },
    'query-port': { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});

function count(v: string | undefined, def: number, name: string): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 32) throw new Error(`--${name} must be an integer from 0 to 32`);
  return n;
}

async function getJson(url: string): Promise<any> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url} → ${r.status}: ${await r.text()}`);
  return r.json();
}

function untilSignal(): Promise<void> {
  // `on`, not `once`: Ctrl-C reaches this process twice (from the terminal's process group and
  // relayed by the tsx parent); with no listener left the second one would kill it mid-shutdown.
  return new Promise((resolve) => {
    let seen = false;
    const onSignal = (signal: string) => {
      if (seen) return;
      seen = true;
      console.log(`${signal}: stopping (workers drain first)…`);
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

async function demo(): Promise<void> {
  console.log('starting the local stack (nats-server + ClickHouse engine from chdb + 4 functions)…');
  const t0 = Date.now();
  const stack = await startStack({ verbose: values.verbose });
  try {
    console.log(`stack up in ${((Date.now() - t0) / 1000).toFixed(1)} s — the API is OPEN in the demo (set API_TOKENS to require bearer tokens)`);
    const status = await uploadFile(FIXTURE, { url: stack.uploadUrl, wait: true, out: process.stdout });
    if (status.state !== 'done') throw new Error(`upload ended in state ${status.state}: ${status.error ?? ''}`);
    const gpus = await getJson(`${stack.queryUrl}/api/v1/gpus`);
    const metrics = await getJson(`${stack.queryUrl}/api/v1/metrics`);
    const rows = metrics.metrics.reduce((n: number, m: { samples: number }) => n + m.samples, 0);
    console.log(`\nGPUs: ${gpus.count}   rows stored: ${rows.toLocaleString()}   metrics: ${metrics.count}`);
    const gpu = gpus.gpus[0];
    const telemetry = await getJson(`${stack.queryUrl}/api/v1/gpus/${encodeURIComponent(gpu.uuid)}/telemetry?limit=5`);
    console.log(`\nfirst rows of ${gpu.uuid} (${gpu.hostname}, ${gpu.device}, ${gpu.model_name}):`);
    console.table(telemetry.data.map((r: any) => ({ timestamp: r.timestamp, metric: r.metric_name, value: r.value })));
    console.log(`try it yourself while a stack runs (npm run dev):\n  curl ${stack.queryUrl}/api/v1/gpus/${gpu.uuid}/telemetry?start_time=2025-07-18T20:42:35Z`);
  } finally {
    await stack.stop();
  }
}

async function up(autoscale: boolean): Promise<void> {
  const dataDir = values.data ?? join(repoRoot, '.data');
  const stack: Stack = await startStack({
    dataDir,
    verbose: true,
    ingestWorkers: autoscale ? 0 : count(values.ingest, 1, 'ingest'),
    collectWorkers: autoscale ? 0 : count(values.collect, 1, 'collect'),
    uploadPort: values['upload-port'] ? Number(values['upload-port']) : 8081,
    queryPort: values['query-port'] ? Number(values['query-port']) : 8082,
  });
  let stopScaler: (() => Promise<void>) | undefined;
  if (autoscale) {
    try {
      const { startLocalAutoscaler } = await import('./autoscaler/index.ts');
      stopScaler = await startLocalAutoscaler(stack, dataDir);
    } catch (e) {
      await stack.stop({ keepData: true });
      throw e;
    }
  }
  console.log(`
local stack is up (data in ${dataDir}); the API is OPEN unless API_TOKENS is set
  upload:  ${stack.uploadUrl}/api/v1/uploads     e.g. curl --data-binary @${FIXTURE} -H 'content-type: text/csv' ${stack.uploadUrl}/api/v1/uploads
  query:   ${stack.queryUrl}/api/v1/gpus   ${stack.queryUrl}/api/v1/metrics   ${stack.queryUrl}/openapi.json
  NATS:    ${stack.nats.url} (monitoring http://${stack.nats.monitorEndpoint}/jsz)
  ClickHouse HTTP: ${stack.clickhouse.url}
Ctrl-C stops everything.`);
  await untilSignal();
  await stopScaler?.();
  await stack.stop({ keepData: true });
}

async function main(): Promise<void> {
  const [command, ...rest] = positionals;
  switch (command) {
    case 'demo':
      return demo();
    case 'up':
      return up(values.autoscale);
    case 'autoscale':
      return up(true);
    case 'provision':
      await provisionAll();
      console.log('provisioned');
      return;
    case 'upload': {
      if (!rest[0]) throw new Error('usage: upload FILE [--wait] [--url URL] [--token T] [--restamp]');
      const status = await uploadFile(rest[0], {
        url: values.url ?? process.env.UPLOAD_URL ?? 'http://127.0.0.1:8081',
        token: values.token ?? process.env.API_TOKEN,
        wait: values.wait,
        restamp: values.restamp,
      });
      if (!values.wait) console.log(JSON.stringify(status, null, 2));
      if (status.state === 'failed') process.exitCode = 1;
      return;
    }
    case 'status': {
      const { printStatus } = await import('./autoscaler/index.ts');
      return printStatus(values.data ?? join(repoRoot, '.data'));
    }
    default:
      console.error('commands: demo | up [--ingest N --collect N --autoscale] | upload FILE [--wait] | provision | autoscale | status');
      process.exitCode = 2;
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
