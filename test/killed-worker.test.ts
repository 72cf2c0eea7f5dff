import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { connect, type JetStreamManager, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONSUMERS, STREAMS } from '../shared/names.ts';
import { generateCsv } from './bench/generate.ts';
import { repoRoot, startStack, startWorker, type Stack } from './local/stack.ts';
import { waitFor } from './support/ports.ts';

// kill -9 of an ingest worker in the middle of a part: with the default short ack_wait and the
// workers' heartbeats the server hands the part to another worker within seconds (it was 60 s),
// and every row is still stored exactly once. The timing numbers: test/fault/kill-ingest.ts.

const FIXTURE = join(repoRoot, 'test', 'fixtures', 'dcgm_metrics_20250718_134233.csv');
const OLD_ACK_WAIT_MS = 60_000;

let stack: Stack;
let nc: NatsConnection;
let jsm: JetStreamManager;
let ch: ClickHouseClient;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'killed-worker-'));
  // One part per upload; no ingest worker yet (the test starts them).
  stack = await startStack({ ingestWorkers: 0, collectWorkers: 1, httpFunctions: ['upload'], env: { UPLOAD_PART_BYTES: String(64 * 1024 * 1024) } });
  nc = await connect({ servers: stack.nats.url });
  jsm = await nc.jetstreamManager();
  ch = createClient({ url: stack.clickhouse.url, database: 'telemetry' });
}, 120_000);

afterAll(async () => {
  await ch?.close();
  await nc?.close();
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

const startIngest = () => startWorker(stack, 'ingest');

const ingestConsumer = () => jsm.consumers.info(STREAMS.uploads, CONSUMERS.ingest);

describe('a killed ingest worker', () => {
  it('has its part redelivered well before the old 60 s ack_wait, and every row stored once', async () => {
    const ackWaitMs = (await ingestConsumer()).config.ack_wait! / 1e6;
    expect(ackWaitMs).toBeLessThanOrEqual(OLD_ACK_WAIT_MS / 4);

    const file = join(dir, 'part.csv');
    const { rows } = await generateCsv(FIXTURE, file, 60_000);
    const a = await startIngest();
    const res = await fetch(`${stack.uploadUrl}/api/v1/uploads`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body: new Uint8Array(readFileSync(file)) });
    const { id, parts } = (await res.json()) as { id: string; parts: number };
    expect(parts).toBe(1);
    await waitFor(async () => (await ingestConsumer()).num_ack_pending === 1, 'worker A holds the part', 30_000, 20);

    // Frozen from here on (no more heartbeats, as if dead); killed once B is up. The redelivery
    // timer is the server's, so this bound does not depend on how loaded this machine is.
    a.process.kill('SIGSTOP');
    const frozenAt = Date.now();
    const b = await startIngest();
    a.process.kill('SIGKILL');
    let redeliveredAfterMs = 0;
    await waitFor(async () => {
      if ((await ingestConsumer()).num_redelivered > 0) redeliveredAfterMs = Date.now() - frozenAt;
      return redeliveredAfterMs > 0;
    }, 'redelivery', OLD_ACK_WAIT_MS, 100);
    expect(redeliveredAfterMs).toBeLessThan(OLD_ACK_WAIT_MS * 0.6);

    let status: Record<string, any> = {};
    await waitFor(async () => {
      status = (await (await fetch(`${stack.uploadUrl}/api/v1/uploads/${id}`)).json()) as Record<string, any>;
      return status.state === 'done' || status.state === 'failed';
    }, 'upload done', 120_000, 200);
    expect(status).toMatchObject({ state: 'done', rows_accepted: rows, rows_stored: rows });
    const rs = await ch.query({ query: 'SELECT count() AS n, uniqExact(batch_id, line) AS u FROM samples WHERE upload_id = {id:String}', query_params: { id }, format: 'JSONEachRow' });
    const [{ n, u }] = (await rs.json()) as { n: string; u: string }[];
    expect({ n: Number(n), u: Number(u) }).toEqual({ n: rows, u: rows });
    expect(b.process.exitCode).toBeNull();
  }, 180_000);
});
