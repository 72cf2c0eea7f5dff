// Local command line: `npm run demo`, `npm run dev`, `npm run cli -- <command>`.
//   demo                      start a fresh stack, upload the bundled DCGM sample, show results, stop
//   up [--ingest N] [--collect N] [--autoscale] [--data DIR] [--expose]
//                             keep the stack running (Ctrl-C stops it) and print the URLs;
//                             upload/query listen on 127.0.0.1 unless --expose (all interfaces)
//   upload FILE [--wait] [--url URL] [--token T] [--restamp] [--key KEY]
//                             stream a CSV to the upload function, with progress (--key: an
//                             Idempotency-Key, so running it again after a failure is safe)
//   remote-write [FILE] [--url URL] [--token T] [--interval S] [--count N] [--batch N]
//                             act as Prometheus: send the bundled sample's series as live samples
//                             (or a DCGM CSV's rows with their own times) by remote write
//   provision                 create streams, consumers, buckets and tables (env: NATS_URL, CLICKHOUSE_*)
//   autoscale                 = up --autoscale: workers follow keda/ ScaledObjects on consumer lag
//   status [--data DIR]       autoscaler status: replicas, lag and last decision per function
//   replay FILE [--rate ROWS_PER_S] [--duration D] [--loop] [--url URL] [--token T]
//                             replay a CSV as live data (rows re-stamped with the current time)
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { uploadFile } from '../../functions/upload/cli.ts';
import { provisionAll } from '../../shared/provision-main.ts';
import { remoteWriteCli } from './remote-write-cli.ts';
import { repoRoot, startStack, type Stack } from './stack.ts';
import { holdRestarts } from './supervisor.ts';

const FIXTURE = join(repoRoot, 'test', 'fixtures', 'dcgm_metrics_20250718_134233.csv');

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    wait: { type: 'boolean', default: false },
    url: { type: 'string' },
    token: { type: 'string' },
    key: { type: 'string' },
    restamp: { type: 'boolean', default: false },
    ingest: { type: 'string' },
    collect: { type: 'string' },
    autoscale: { type: 'boolean', default: false },
    data: { type: 'string' },
    'upload-port': { type: 'string' },
    'query-port': { type: 'string' },
    'remote-write-port': { type: 'string' },
    interval: { type: 'string' },
    count: { type: 'string' },
    batch: { type: 'string' },
    verbose: { type: 'boolean', default: false },
    expose: { type: 'boolean', default: false },
    rate: { type: 'string' },
    duration: { type: 'string' },
    loop: { type: 'boolean', default: false },
  },
});

function count(v: string | undefined, def: number, name: string, max = 32): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > max) throw new Error(`--${name} must be an integer from 0 to ${max}`);
  return n;
}

function seconds(v: string | undefined, def: number, name: string): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0.1 || n > 3600) throw new Error(`--${name} must be a number of seconds from 0.1 to 3600`);
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
      // Synchronously, before the functions' own exits (they got the same signal) are seen.
      holdRestarts();
      if (seen) return;
      seen = true;
      console.log(`${signal}: stopping (workers drain first)…`);
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onSignal);
  });
}

async function demo(): Promise<void> {
  console.log('starting the local stack (nats-server + ClickHouse engine from chdb + 5 functions)…');
  const t0 = Date.now();
  const stack = await startStack({ verbose: values.verbose, httpFunctions: ['upload', 'query', 'remote-write'] });
  try {
    console.log(`stack up in ${((Date.now() - t0) / 1000).toFixed(1)} s — the API is OPEN in the demo (set API_TOKENS to require bearer tokens)`);
    const status = await uploadFile(FIXTURE, { url: stack.uploadUrl, wait: true, out: process.stdout });
    if (status.state !== 'done') throw new Error(`upload ended in state ${status.state}: ${status.error ?? ''}`);
    // The GPU list is paged: the total is the sum over hosts.
    const gpus = await getJson(`${stack.queryUrl}/api/v1/gpus?limit=1`);
    const hosts = await getJson(`${stack.queryUrl}/api/v1/hosts?limit=1000`);
    const gpuCount = hosts.hosts.reduce((n: number, h: { gpus: number }) => n + h.gpus, 0);
    const metrics = await getJson(`${stack.queryUrl}/api/v1/metrics`);
    const rows = metrics.metrics.reduce((n: number, m: { samples: number }) => n + m.samples, 0);
    console.log(`\nGPUs: ${gpuCount}   rows stored: ${rows.toLocaleString()}   metrics: ${metrics.count}`);
    const gpu = gpus.gpus[0];
    const telemetry = await getJson(`${stack.queryUrl}/api/v1/gpus/${encodeURIComponent(gpu.uuid)}/telemetry?limit=5`);
    console.log(`\nfirst rows of ${gpu.uuid} (${gpu.hostname}, ${gpu.device}, ${gpu.model_name}):`);
    console.table(telemetry.data.map((r: any) => ({ timestamp: r.timestamp, metric: r.metric_name, value: r.value })));
    // The live path: the same GPUs' series by Prometheus remote write, stamped now.
    const since = new Date(Date.now() - 1000).toISOString();
    console.log('\nremote write (what a Prometheus scraping dcgm-exporter sends):');
    const live = await remoteWriteCli({ url: `${stack.remoteWriteUrl}/api/v1/write`, intervalMs: 0, count: 1, batch: 2000 });
    const liveQuery = `${stack.queryUrl}/api/v1/gpus/${encodeURIComponent(gpu.uuid)}/telemetry?start_time=${since}`;
    let fresh: any = { count: 0 };
    for (let i = 0; i < 100 && fresh.count < 10; i++) {
      fresh = await getJson(liveQuery);
      if (fresh.count < 10) await new Promise((r) => setTimeout(r, 200));
    }
    console.log(`${live.toLocaleString()} live samples accepted; ${gpu.uuid} now has ${fresh.count} samples stamped after ${since}`);
    console.log(`try it yourself while a stack runs (npm run dev):\n  curl ${stack.queryUrl}/api/v1/gpus/${gpu.uuid}/telemetry?start_time=2025-07-18T20:42:35Z\n  npm run cli -- remote-write --count 0   # live samples every 5 s until Ctrl-C`);
  } finally {
    await stack.stop();
  }
}

async function up(autoscale: boolean): Promise<void> {
  const dataDir = values.data ?? join(repoRoot, '.data');
  const uploadPort = values['upload-port'] ? Number(values['upload-port']) : 8081;
  const queryPort = values['query-port'] ? Number(values['query-port']) : 8082;
  const { statusFileIn } = await import('./autoscaler/index.ts');
  const stack: Stack = await startStack({
    // The console (query, at /) uploads to the upload function from the browser: tell it where
    // upload is and let upload accept the console's origin. AUTOSCALER_STATUS_FILE: replicas on
    // the console's Pipeline page. Variables already set in the environment win.
    env: Object.fromEntries(
      Object.entries({
        UPLOAD_PUBLIC_URL: `http://127.0.0.1:${uploadPort}`,
        UPLOAD_CORS_ORIGINS: `http://127.0.0.1:${queryPort},http://localhost:${queryPort}`,
        AUTOSCALER_STATUS_FILE: statusFileIn(dataDir),
      }).filter(([k]) => !process.env[k]),
    ),
    dataDir,
    verbose: true,
    // A crashed or killed function comes back, with back-off, as under a Deployment.
    supervise: true,
    ingestWorkers: autoscale ? 0 : count(values.ingest, 1, 'ingest'),
    collectWorkers: autoscale ? 0 : count(values.collect, 1, 'collect'),
    uploadPort,
    queryPort,
    host: values.expose ? '0.0.0.0' : '127.0.0.1',
    remoteWritePort: values['remote-write-port'] ? Number(values['remote-write-port']) : 8083,
    httpFunctions: ['upload', 'query', 'remote-write'],
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
  ${values.expose ? `listening on ALL interfaces (--expose)${process.env.API_TOKENS ? '' : ' with an OPEN API: anyone on the network can upload and read'}` : 'listening on 127.0.0.1 only (--expose listens on all interfaces)'}
  upload:  ${stack.uploadUrl}/api/v1/uploads     e.g. curl --data-binary @${FIXTURE} -H 'content-type: text/csv' ${stack.uploadUrl}/api/v1/uploads
  console: ${stack.queryUrl}/   (Fleet, GPU charts, Upload, Pipeline; API reference at ${stack.queryUrl}/docs)
  query:   ${stack.queryUrl}/api/v1/gpus   ${stack.queryUrl}/api/v1/metrics   ${stack.queryUrl}/openapi.json
  remote write (Prometheus remote_write url): ${stack.remoteWriteUrl}/api/v1/write   e.g. npm run cli -- remote-write --count 0
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
      if (!rest[0]) throw new Error('usage: upload FILE [--wait] [--url URL] [--token T] [--restamp] [--key KEY]');
      const status = await uploadFile(rest[0], {
        url: values.url ?? process.env.UPLOAD_URL ?? 'http://127.0.0.1:8081',
        token: values.token ?? process.env.API_TOKEN,
        wait: values.wait,
        restamp: values.restamp,
        key: values.key,
      });
      if (!values.wait) console.log(JSON.stringify(status, null, 2));
      if (status.state === 'failed') process.exitCode = 1;
      return;
    }
    case 'replay': {
      if (!rest[0]) throw new Error('usage: replay FILE [--rate ROWS_PER_S] [--duration D] [--loop] [--url URL] [--token T]');
      const { parseDuration, replay } = await import('./replay.ts');
      const rate = Number(values.rate ?? 5000);
      if (!Number.isFinite(rate) || rate <= 0 || rate > 10_000_000) throw new Error('--rate must be a number of rows per second above 0');
      const url = values.url ?? process.env.UPLOAD_URL ?? 'http://127.0.0.1:8081';
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      const t0 = Date.now();
      const r = await replay({
        file: rest[0],
        url,
        token: values.token ?? process.env.API_TOKEN,
        rate,
        durationMs: values.duration === undefined ? undefined : parseDuration(values.duration),
        loop: values.loop,
        signal: stop.signal,
        onUpload: (u) => console.log(`${new Date().toISOString()} upload ${u.id ?? '-'} ${u.rows} rows → ${u.status} (${u.totalRows.toLocaleString('en-US')} rows sent)`),
      });
      console.log(`replayed ${r.rows.toLocaleString('en-US')} rows in ${r.uploads} uploads over ${((Date.now() - t0) / 1000).toFixed(1)} s to ${url}${r.failed ? `; ${r.failed} uploads refused or unanswered` : ''}${r.retries ? `; ${r.retries} attempts repeated (same Idempotency-Key)` : ''}${r.behind ? `; ${r.behind.toLocaleString('en-US')} rows not sent: the target was slower than --rate` : ''}`);
      if (r.failed) process.exitCode = 1;
      return;
    }
    case 'remote-write': {
      let stop = false;
      process.once('SIGINT', () => (stop = true));
      const base = values.url ?? process.env.REMOTE_WRITE_URL ?? 'http://127.0.0.1:8083';
      await remoteWriteCli({
        url: base.endsWith('/api/v1/write') ? base : `${base.replace(/\/$/, '')}/api/v1/write`,
        token: values.token ?? process.env.API_TOKEN,
        file: rest[0],
        intervalMs: seconds(values.interval, 5, 'interval') * 1000,
        count: count(values.count, 1, 'count', 1_000_000),
        batch: count(values.batch, 2000, 'batch', 100_000) || 2000,
        stopped: () => stop,
      });
      return;
    }
    case 'status': {
      const { printStatus } = await import('./autoscaler/index.ts');
      return printStatus(values.data ?? join(repoRoot, '.data'));
    }
    default:
      console.error('commands: demo | up [--ingest N --collect N --autoscale --expose] | upload FILE [--wait] | replay FILE [--rate R --duration D --loop] | remote-write [FILE] [--count N --interval S] | provision | autoscale | status');
      process.exitCode = 2;
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
