import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uploadFile } from '../functions/upload/cli.ts';
import { STREAMS } from '../shared/names.ts';
import { generateCsv } from './bench/generate.ts';
import { startAutoscaler, type Autoscaler, type AutoscaleDecision } from './local/autoscaler/index.ts';
import type { ProcessPool } from './local/autoscaler/process-pool.ts';
import { loadScaledObjects } from './local/autoscaler/scaledobject.ts';
import { repoRoot, startStack, type Stack } from './local/stack.ts';
import { waitFor } from './support/ports.ts';

// The whole pipeline with no queue workers running: the local autoscaler follows the real keda/
// ScaledObjects (timings shortened, thresholds lowered) and starts real ingest and collect worker
// processes from the consumer lag of a multi-part upload, then scales both back to zero.

const TARGETS = ['ingest', 'collect'] as const;
const COOLDOWN_S = 3;
/** lagThreshold per stream for this small load; other triggers (ROLLUPS) keep the manifest's. */
const LAG_THRESHOLD: Record<string, number> = { [STREAMS.uploads]: 2, [STREAMS.telemetry]: 5 };

let stack: Stack;
let autoscaler: Autoscaler;
let ch: ClickHouseClient;
let dir: string;
let csv: { rows: number; bytes: number };
const decisions: AutoscaleDecision[] = [];
const workerLog: string[] = [];
const maxSeen: Record<string, number> = { ingest: 0, collect: 0 };

const pool = (t: string) => autoscaler.pools[t] as ProcessPool;
/** Worker processes actually alive (desired replicas can differ while starting/draining). */
const running = (t: string) => pool(t).running().length;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'autoscale-e2e-'));
  const file = join(dir, 'big.csv');
  csv = await generateCsv(join(repoRoot, 'test', 'fixtures', 'dcgm_metrics_20250718_134233.csv'), file, 60_000);
  stack = await startStack({
    ingestWorkers: 0,
    collectWorkers: 0,
    httpFunctions: ['upload', 'query'],
    // ~13 parts of 2 MiB, 3 batches of ≤ 2000 rows each: enough lag for several replicas.
    env: { UPLOAD_PART_BYTES: String(2 * 1024 * 1024), INGEST_BATCH_ROWS: '2000' },
  });
  ch = createClient({ url: stack.clickhouse.url, database: 'telemetry' });
  const configs = loadScaledObjects(join(repoRoot, 'keda'), {
    monitorEndpoint: stack.nats.monitorEndpoint,
    minReplicaCount: 0,
    maxReplicaCount: 3,
    pollingInterval: 1,
    cooldownPeriod: COOLDOWN_S,
  }).map((c) => ({ ...c, triggers: c.triggers.map((t) => ({ ...t, lagThreshold: LAG_THRESHOLD[t.stream] ?? t.lagThreshold })) }));
  expect(configs.map((c) => c.target).sort()).toEqual(['collect', 'ingest']);
  // collect drains two consumers: sample batches and rollup passes.
  expect(configs.find((c) => c.target === 'collect')!.triggers.map((t) => t.stream)).toEqual([STREAMS.telemetry, STREAMS.rollups]);
  autoscaler = startAutoscaler({
    scaledObjects: configs,
    env: stack.env,
    print: 'none',
    workerOutput: (line) => workerLog.push(line),
    onDecision: (d) => {
      decisions.push(d);
      maxSeen[d.target] = Math.max(maxSeen[d.target] ?? 0, d.to);
    },
  });
}, 90_000);

afterAll(async () => {
  await autoscaler?.stop();
  await ch?.close();
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('autoscaled pipeline (real keda/ ScaledObjects, real workers)', () => {
  it('starts at zero workers while there is no lag', async () => {
    // Two polls of each ScaledObject with lag 0 and no worker; every trigger's consumer is readable.
    await waitFor(async () => TARGETS.every((t) => decisions.filter((d) => d.target === t).length >= 2), 'first polls', 10_000);
    for (const t of TARGETS) {
      expect(decisions.filter((d) => d.target === t).every((d) => d.lag === 0 && d.to === 0 && d.error === undefined)).toBe(true);
      expect(running(t)).toBe(0);
    }
  });

  it('scales ingest and collect up for a multi-part upload, stores every row, and back to zero', async () => {
    const sampler = setInterval(() => {
      for (const t of TARGETS) maxSeen[`${t}:running`] = Math.max(maxSeen[`${t}:running`] ?? 0, running(t));
    }, 200);
    try {
      const status = await uploadFile(join(dir, 'big.csv'), { url: stack.uploadUrl, wait: true, timeoutMs: 60_000, out: quiet });
      expect(status.state, JSON.stringify(status)).toBe('done');
      expect(status.rows_rejected).toBe(0);
      expect(status.rows_accepted).toBe(csv.rows);
      expect(status.rows_stored).toBe(csv.rows);

      const r = await ch.query({ query: 'SELECT count() AS n FROM samples WHERE upload_id = {id:String}', query_params: { id: status.id }, format: 'JSONEachRow' });
      const [{ n }] = (await r.json()) as { n: string }[];
      expect(Number(n)).toBe(csv.rows);

      // Both functions were woken from zero, and the lag drove at least one of them past 1.
      for (const t of TARGETS) {
        expect(decisions.some((d) => d.target === t && d.kind === 'activate' && d.from === 0 && d.to === 1)).toBe(true);
        expect(maxSeen[`${t}:running`]).toBeGreaterThan(0);
      }
      expect(Math.max(maxSeen.ingest!, maxSeen.collect!), JSON.stringify(maxSeen)).toBeGreaterThanOrEqual(2);

      // No lag left: after cooldownPeriod KEDA's deactivation takes both back to 0, and the
      // workers drain and exit (none is SIGKILLed).
      await waitFor(async () => TARGETS.every((t) => autoscaler.pools[t]!.replicas() === 0), 'scale to zero', (COOLDOWN_S + 20) * 1000, 200);
      // scaleTo calls are serialised: this resolves once the earlier scale-down's processes exited.
      await Promise.all(TARGETS.map((t) => pool(t).scaleTo(0)));
      for (const t of TARGETS) expect(running(t)).toBe(0);
      for (const t of TARGETS) {
        const last = decisions.filter((d) => d.target === t && d.kind === 'deactivate').at(-1);
        expect(last?.to).toBe(0);
        expect(last?.lag).toBe(0);
      }
      expect(workerLog.filter((l) => /SIGKILL|exited unexpectedly/.test(l))).toEqual([]);
    } finally {
      clearInterval(sampler);
      const changes = decisions.filter((d) => d.to !== d.from).map((d) => `${d.at.slice(11, 19)} ${d.target} lag=${d.lag} ${d.from}→${d.to} (${d.kind})`);
      console.log(`${csv.rows} rows; max replicas seen ${JSON.stringify(maxSeen)}\n${changes.join('\n')}`);
    }
  }, 90_000);
});

const quiet = { isTTY: false, write: () => true } as unknown as NodeJS.WriteStream;
