import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startStack, type Stack } from './local/stack.ts';
import { expositionText } from './support/dcgm-series.ts';
import { fixtureRows } from './support/fixtures.ts';
import { WaitAborted, freePort, waitFor } from './support/ports.ts';
import { startNats, stopProcess } from './support/servers.ts';

// A REAL Prometheus (Debian's `prometheus` package, run directly on loopback with a temp config
// and storage) scrapes a small server that serves dcgm-exporter exposition text built from the
// bundled sample's rows, and remote-writes to the remote-write function on the local stack.
// Proves: what the query API answers equals what was served (uuids, metrics, values, labels);
// while NATS is stopped the function answers 5xx and Prometheus retries; afterwards every sample
// Prometheus holds is stored exactly once.

const WRITE_TOKEN = 'prom-write-token';
const READ_TOKEN = 'prom-read-token';
const rows = fixtureRows();
const served = new Map(rows.map((r) => [`${r.uuid} ${r.metric_name}`, r]));
const uuids = [...new Set(rows.map((r) => r.uuid))];

function prometheusBinary(): string | undefined {
  for (const c of [process.env.PROMETHEUS_BIN, '/usr/bin/prometheus']) if (c && existsSync(c)) return c;
  const which = spawnSync('sh', ['-c', 'command -v prometheus'], { encoding: 'utf8' });
  return which.status === 0 && which.stdout.trim() ? which.stdout.trim() : undefined;
}
const PROMETHEUS = prometheusBinary();

let stack: Stack;
let ch: ClickHouseClient;
let exporter: Server;
let scrapes = 0;
let prometheus: ChildProcess | undefined;
let promDir: string;
let promUrl: string;
let promLog = '';
let natsDir: string | undefined;

const auth = { authorization: `Bearer ${READ_TOKEN}` };
async function api(path: string): Promise<any> {
  const res = await fetch(`${stack.queryUrl}${path}`, { headers: auth });
  if (!res.ok) throw new Error(`GET ${path} → ${res.status}: ${await res.text()}`);
  return res.json();
}

/** A counter from a Prometheus-format /metrics page (summed over the series matching `labels`). */
async function scrapeCounter(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(url)).text();
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm'))) {
    const have = Object.fromEntries([...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[2]);
  }
  return sum;
}
const functionMetrics = () => `${stack.remoteWriteUrl}/metrics`;
const writeStatus = (status: string) =>
  scrapeCounter(functionMetrics(), 'gputel_http_request_duration_seconds_count', { function: 'remote-write', route: '/api/v1/write', status });

async function chRows<T>(query: string): Promise<T[]> {
  return (await ch.query({ query, format: 'JSONEachRow' })).json<T>();
}

describe.skipIf(!PROMETHEUS && !process.env.CI)('a real Prometheus remote-writes dcgm-exporter data', () => {
  beforeAll(async () => {
    if (!PROMETHEUS) throw new Error('prometheus not found: install Debian\'s package (`apt-get install -y prometheus`; .ci/run does) or set PROMETHEUS_BIN');
    stack = await startStack({
      httpFunctions: ['query', 'remote-write'],
      ingestWorkers: 0,
      env: {
        API_TOKENS: `${WRITE_TOKEN}:write,${READ_TOKEN}:read`,
        REMOTE_WRITE_PUBLISH_TIMEOUT_MS: '3000',
        // Several batches per Prometheus request (1,000 samples), so an outage can catch a request
        // half published and its retry must be deduplicated.
        REMOTE_WRITE_BATCH_ROWS: '100',
      },
    });
    natsDir = stack.nats.dataDir;
    ch = createClient({ url: stack.clickhouse.url, database: 'telemetry' });

    const text = expositionText(rows);
    exporter = createServer((req, res) => {
      scrapes++;
      res.writeHead(req.url === '/metrics' ? 200 : 404, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(req.url === '/metrics' ? text : '');
    });
    await new Promise<void>((r) => exporter.listen(0, '127.0.0.1', r));
    const exporterPort = (exporter.address() as AddressInfo).port;

    promDir = mkdtempSync(join(tmpdir(), 'prometheus-'));
    const promPort = await freePort();
    promUrl = `http://127.0.0.1:${promPort}`;
    const config = {
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1m' },
      scrape_configs: [
        // honor_labels keeps the exporter's own instance/job labels, as the sample's labels_raw has them.
        { job_name: 'dcgm', honor_labels: true, static_configs: [{ targets: [`127.0.0.1:${exporterPort}`] }] },
      ],
      remote_write: [
        {
          url: `${stack.remoteWriteUrl}/api/v1/write`,
          authorization: { credentials: WRITE_TOKEN },
          remote_timeout: '10s',
          queue_config: { batch_send_deadline: '1s', max_samples_per_send: 1000, min_backoff: '100ms', max_backoff: '1s' },
          // Metadata-only requests every 2 s: they must be accepted too.
          metadata_config: { send: true, send_interval: '2s' },
        },
      ],
    };
    writeFileSync(join(promDir, 'prometheus.yml'), stringify(config));
    prometheus = spawn(
      PROMETHEUS,
      [
        `--config.file=${join(promDir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(promDir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        '--storage.tsdb.retention.time=1h',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], cwd: promDir },
    );
    const keep = (d: Buffer) => (promLog = (promLog + d).slice(-20_000));
    prometheus.stdout!.on('data', keep);
    prometheus.stderr!.on('data', keep);
    await waitFor(async () => {
      if (prometheus!.exitCode !== null) throw new WaitAborted(`prometheus exited:\n${promLog}`);
      return (await fetch(`${promUrl}/-/ready`)).ok;
    }, 'prometheus /-/ready', 60_000, 200);
  }, 180_000);

  afterAll(async () => {
    if (prometheus) await stopProcess(prometheus, 10_000);
    await new Promise((r) => (exporter ? exporter.close(r) : r(undefined)));
    await ch?.close();
    await stack?.stop();
    if (natsDir) rmSync(natsDir, { recursive: true, force: true }); // the restarted server does not own it
    if (promDir) rmSync(promDir, { recursive: true, force: true });
  }, 60_000);

  it('every GPU and metric that was served is queryable with the served values and labels', async () => {
    await waitFor(async () => {
      const { gpus } = await api('/api/v1/gpus?limit=1000');
      const seen = new Set(gpus.filter((g: any) => g.metrics.length === 10).map((g: any) => g.uuid));
      return uuids.every((u) => seen.has(u));
    }, `all 247 GPUs with 10 metrics through Prometheus (scrapes so far: ${scrapes})\n${promLog}`, 90_000, 500);

    const { gpus } = await api('/api/v1/gpus?limit=1000');
    expect(gpus.map((g: any) => g.uuid).sort()).toEqual([...uuids].sort());
    for (const g of gpus) {
      const r = rows.find((x) => x.uuid === g.uuid)!;
      expect({ gpu_id: g.gpu_id, device: g.device, model_name: g.model_name, hostname: g.hostname }).toEqual({
        gpu_id: r.gpu_id, device: r.device, model_name: r.modelName, hostname: r.Hostname,
      });
    }
    // Every stored value of every (GPU, metric) is the value the exporter served.
    for (const uuid of uuids) {
      const { metrics } = await api(`/api/v1/gpus/${uuid}/summary`);
      expect(metrics).toHaveLength(10);
      for (const m of metrics) {
        const value = Number(served.get(`${uuid} ${m.metric_name}`)!.value);
        expect([m.min, m.max, m.last_value], `${uuid} ${m.metric_name}`).toEqual([value, value, value]);
      }
    }
    // The stored labels are dcgm-exporter's, exactly as the CSV export recorded them.
    const telemetry = await api(`/api/v1/gpus/${uuids[0]}/telemetry?limit=100`);
    expect(telemetry.count).toBeGreaterThan(0);
    for (const s of telemetry.data) expect(s.labels_raw).toBe(served.get(`${uuids[0]} ${s.metric_name}`)!.labels_raw);
    // Prometheus's own series (up, scrape_*) have no UUID: counted and dropped, not stored.
    expect(await scrapeCounter(functionMetrics(), 'gputel_remote_write_samples_dropped_total', { reason: 'no_uuid' })).toBeGreaterThan(0);
    expect(Number((await chRows<{ n: string }>("SELECT count() AS n FROM samples WHERE metric_name = 'up'"))[0].n)).toBe(0);
  }, 150_000);

  it('NATS down: 5xx and Prometheus retries; back up: every sample Prometheus holds is stored exactly once', async () => {
    const { port, monitorPort, dataDir } = stack.nats;
    const failedBefore = (await writeStatus('503')) + (await writeStatus('500'));
    await stack.nats.stop({ keepData: true });
    const stoppedAt = Date.now();
    const scrapesBefore = scrapes;
    let restartedAt: number;
    try {
      // Prometheus keeps scraping and sending (and the function keeps refusing) until NATS is back.
      await waitFor(
        async () => scrapes >= scrapesBefore + 3 && (await writeStatus('503')) + (await writeStatus('500')) >= failedBefore + 3,
        'three scrapes and three remote-write 5xx answers while NATS is down',
        60_000,
        250,
      );
    } finally {
      restartedAt = Date.now();
      stack.nats = await startNats({ dataDir, port, monitorPort });
    }
    await waitFor(async () => (await scrapeCounter(`${promUrl}/metrics`, 'prometheus_remote_storage_samples_retried_total')) > 0, 'Prometheus to retry', 60_000, 250);

    // What Prometheus holds for one series up to now, sample by sample, must all be stored.
    const until = Date.now() / 1000;
    const uuid = uuids[1];
    const metric = 'DCGM_FI_DEV_GPU_TEMP';
    const q = encodeURIComponent(`${metric}{UUID="${uuid}"}[15m]`);
    const prom = await (await fetch(`${promUrl}/api/v1/query?query=${q}&time=${until}`)).json();
    const promTimes: number[] = prom.data.result[0].values.map(([t]: [number, string]) => Math.round(t * 1000));
    const end = new Date(promTimes.at(-1)!).toISOString();
    let stored: number[] = [];
    await waitFor(async () => {
      const t = await api(`/api/v1/gpus/${uuid}/telemetry?metric=${metric}&end_time=${end}&limit=10000`);
      stored = t.data.map((s: any) => Date.parse(s.timestamp));
      return stored.length > 0 && promTimes.filter((x) => x >= stored[0]).every((x) => stored.includes(x));
    }, 'every sample Prometheus holds (including those scraped during the outage) to be stored', 90_000, 500);
    // From the first stored sample on (Prometheus's remote write starts a moment after its
    // first scrape), exactly Prometheus's samples: none lost in the outage, none twice.
    expect(stored).toEqual(promTimes.filter((x) => x >= stored[0]));
    // Samples scraped while NATS was down are among them: they arrived through retries.
    expect(stored.filter((t) => t > stoppedAt && t < restartedAt!).length).toBeGreaterThanOrEqual(2);

    // No sample stored twice anywhere, although Prometheus re-sent whole requests.
    const [dups] = await chRows<{ rows: string; distinct: string }>(
      'SELECT count() AS rows, uniqExact(uuid, metric_name, timestamp) AS distinct FROM samples',
    );
    expect(Number(dups.rows)).toBeGreaterThan(2470);
    expect(Number(dups.rows)).toBe(Number(dups.distinct));
    // Nothing Prometheus sent was refused as malformed (metadata-only requests included).
    const text = await (await fetch(functionMetrics())).text();
    expect(text).not.toMatch(/gputel_http_request_duration_seconds_count\{[^}]*function="remote-write"[^}]*status="4\d\d"/);
    expect(await scrapeCounter(`${promUrl}/metrics`, 'prometheus_remote_storage_samples_failed_total')).toBe(0);
  }, 240_000);
});
