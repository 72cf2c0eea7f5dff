import { readFileSync, rmSync } from 'node:fs';
import { connect } from 'nats';
import { STREAMS } from '../shared/names.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { startStack, type Stack } from './local/stack.ts';
import { waitFor } from './support/ports.ts';
import { startClickHouse } from './support/servers.ts';
import { fixtureRows } from './support/fixtures.ts';
import { HEADER, syntheticCsv } from './support/csv.ts';

// End to end through real processes: upload (HTTP) → object store → ingest worker → JetStream →
// collect worker → ClickHouse → query (HTTP), on a real nats-server and ClickHouse engine.

const FIXTURE = 'test/fixtures/dcgm_metrics_20250718_134233.csv';
const UPLOAD_TOKEN = 'test-upload-token';
const READ_TOKEN = 'test-read-token';

let stack: Stack;
let ch: ClickHouseClient;

const auth = (token: string) => ({ authorization: `Bearer ${token}` });

async function upload(body: BodyInit, headers: Record<string, string> = { 'content-type': 'text/csv' }, query = '') {
  const res = await fetch(`${stack.uploadUrl}/api/v1/uploads${query}`, { method: 'POST', body, headers: { ...auth(UPLOAD_TOKEN), ...headers } });
  return { status: res.status, body: (await res.json()) as any };
}

async function waitUntilSettled(id: string, timeoutMs = 45_000): Promise<any> {
  let status: any;
  await waitFor(async () => {
    status = await (await fetch(`${stack.uploadUrl}/api/v1/uploads/${id}`, { headers: auth(READ_TOKEN) })).json();
    return status.state === 'done' || status.state === 'failed';
  }, `upload ${id} to settle`, timeoutMs, 200);
  return status;
}

async function query(path: string) {
  const res = await fetch(`${stack.queryUrl}${path}`, { headers: auth(READ_TOKEN) });
  return { status: res.status, body: (await res.json()) as any };
}

async function count(sql: string, params: Record<string, unknown> = {}): Promise<number> {
  const rs = await ch.query({ query: sql, query_params: params, format: 'JSONEachRow' });
  return Number(((await rs.json()) as { n: string }[])[0].n);
}

beforeAll(async () => {
  stack = await startStack({
    env: {
      API_TOKENS: `${UPLOAD_TOKEN}:upload,${READ_TOKEN}:read`,
      UPLOAD_MAX_BYTES: String(4 * 1024 * 1024),
      UPLOAD_PART_BYTES: String(256 * 1024), // the 1.1 MB sample becomes 5 parts
      INGEST_BATCH_ROWS: '300',
      COLLECT_MAX_WAIT_MS: '1000',
      WORKER_RETRY_BASE_MS: '200',
    },
    ingestWorkers: 2,
  });
  ch = createClient({ url: stack.clickhouse.url, database: 'telemetry' });
}, 120_000);

afterAll(async () => {
  await ch?.close();
  const chDir = stack?.clickhouse.dataDir;
  await stack?.stop();
  if (chDir) rmSync(chDir, { recursive: true, force: true }); // the restarted engine does not own it
});

describe('the real DCGM sample, end to end', () => {
  let uploadId: string;
  const rows = fixtureRows();

  it('accepts the upload with 202, an id and a status URL', async () => {
    const res = await upload(readFileSync(FIXTURE));
    expect(res.status).toBe(202);
    expect(res.body.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.body.status_url).toBe(`/api/v1/uploads/${res.body.id}`);
    expect(res.body.parts).toBeGreaterThan(1);
    uploadId = res.body.id;
  });

  it('reaches done with every row accepted and stored', async () => {
    const status = await waitUntilSettled(uploadId);
    expect(status).toMatchObject({ state: 'done', rows_accepted: 2470, rows_rejected: 0, rows_stored: 2470, rejects: [] });
    expect(status.parts_ingested).toBe(status.parts);
    expect(await count('SELECT count() AS n FROM samples WHERE upload_id = {id:String}', { id: uploadId })).toBe(2470);
  });

  it('lists 247 GPUs with 10 metrics each', async () => {
    const { status, body } = await query('/api/v1/gpus?limit=1000');
    expect(status).toBe(200);
    const fromFixture = body.gpus.filter((g: any) => rows.some((r) => r.uuid === g.uuid));
    expect(fromFixture).toHaveLength(247);
    for (const g of fromFixture) expect(g.metrics).toHaveLength(10);
    const metrics = await query('/api/v1/metrics');
    expect(metrics.body.metrics.map((m: any) => m.metric_name).filter((m: string) => m.startsWith('DCGM_FI_DEV_'))).toHaveLength(10);
  });

  it("returns one GPU's telemetry equal to its 10 CSV rows, in time order", async () => {
    const uuid = rows[0].uuid;
    const expected = rows
      .filter((r) => r.uuid === uuid)
      .map((r) => ({ timestamp: new Date(r.timestamp).toISOString(), metric_name: r.metric_name, value: Number(r.value), labels_raw: r.labels_raw }))
      .sort((a, b) => a.timestamp.localeCompare(b.timestamp) || a.metric_name.localeCompare(b.metric_name));
    const { status, body } = await query(`/api/v1/gpus/${uuid}/telemetry`);
    expect(status).toBe(200);
    expect(body.data.map((r: any) => ({ timestamp: r.timestamp, metric_name: r.metric_name, value: r.value, labels_raw: r.labels_raw }))).toEqual(expected);
    expect(body.data[0].labels.UUID).toBe(uuid);
    expect(body.data[0]).toMatchObject({ container: '', pod: '', namespace: '' });
  });

  it('treats start_time and end_time as inclusive', async () => {
    const uuid = rows[0].uuid;
    const at = (t: string) => query(`/api/v1/gpus/${uuid}/telemetry?start_time=${t}&end_time=${t}`);
    expect((await at('2025-07-18T20:42:35Z')).body.data).toHaveLength(3);
    expect((await at('2025-07-18T20:42:36Z')).body.data).toHaveLength(1);
    const both = await query(`/api/v1/gpus/${uuid}/telemetry?start_time=2025-07-18T20:42:34Z&end_time=2025-07-18T20:42:36Z`);
    expect(both.body.data).toHaveLength(7);
  });

  it('answers 404 for an unknown GPU, 400 for bad parameters even then, 200 [] for an empty window', async () => {
    expect((await query('/api/v1/gpus/GPU-does-not-exist/telemetry')).status).toBe(404);
    const bad = await query('/api/v1/gpus/GPU-does-not-exist/telemetry?start_time=yesterday');
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain('start_time');
    const reversed = await query(`/api/v1/gpus/${rows[0].uuid}/telemetry?start_time=2025-07-18T20:42:37Z&end_time=2025-07-18T20:42:34Z`);
    expect(reversed.status).toBe(400);
    const empty = await query(`/api/v1/gpus/${rows[0].uuid}/telemetry?start_time=2030-01-01T00:00:00Z`);
    expect(empty.status).toBe(200);
    expect(empty.body.data).toEqual([]);
  });
});

describe('uploads with problems', () => {
  it('stores the good rows of a file with bad rows and reports the bad ones with line numbers', async () => {
    const csv = [
      HEADER,
      '"2026-02-01T00:00:00Z","DCGM_FI_DEV_GPU_TEMP","0","nvidia0","GPU-bad-rows-1","M","h","","","","41","a=""1"""', // line 2 good
      '"not-a-time","DCGM_FI_DEV_GPU_TEMP","0","nvidia0","GPU-bad-rows-1","M","h","","","","41",""', // line 3 bad timestamp
      '"2026-02-01T00:00:01Z","DCGM_FI_DEV_GPU_TEMP","0","nvidia0","GPU-bad-rows-1","M","h","","","","hot",""', // line 4 bad value
      '"2026-02-01T00:00:02Z","DCGM_FI_DEV_GPU_TEMP","0","nvidia0","","M","h","","","","42",""', // line 5 missing uuid
      '"2026-02-01T00:00:03Z","DCGM_FI_DEV_GPU_TEMP","0","nvidia0","GPU-bad-rows-1","M","h"', // line 6 too few fields
      '"2026-02-01T00:00:04Z","DCGM_FI_DEV_GPU_TEMP","0","nvidia0","GPU-bad-rows-1","M","h","","","","43","multi', // lines 7-8: one record
      'line label"',
    ].join('\n') + '\n';
    const res = await upload(csv);
    expect(res.status).toBe(202);
    const status = await waitUntilSettled(res.body.id);
    expect(status).toMatchObject({ state: 'done', rows_accepted: 2, rows_rejected: 4, rows_stored: 2 });
    expect(status.rejects.map((r: any) => r.line)).toEqual([3, 4, 5, 6]);
    expect(status.rejects[0].reason).toContain('timestamp');
    expect(status.rejects[1].reason).toContain('value');
    expect(status.rejects[2].reason).toContain('uuid');
    expect(status.rejects[3].reason).toContain('fields');
    const stored = await query('/api/v1/gpus/GPU-bad-rows-1/telemetry');
    expect(stored.body.data.map((r: any) => r.value)).toEqual([41, 43]);
    expect(stored.body.data[1].labels_raw).toBe('multi\nline label');
  });

  it('rejects a wrong header with 400 naming the columns, and stores nothing', async () => {
    const res = await upload('time,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,value,labels_raw\n"x"\n');
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain('missing column(s): timestamp');
    expect(res.body.error.message).toContain('unknown column(s): time');
  });

  it('answers 413 beyond the size limit, 415 for other media types, 400 for an empty body', async () => {
    const big = HEADER + '\n' + 'x'.repeat(5 * 1024 * 1024);
    expect((await upload(big)).status).toBe(413);
    expect((await upload('{}', { 'content-type': 'application/json' })).status).toBe(415);
    expect((await upload('')).status).toBe(400);
  });

  it('accepts multipart/form-data with a file field', async () => {
    const form = new FormData();
    form.append('file', new Blob([syntheticCsv('GPU-multipart', 25)], { type: 'text/csv' }), 'small.csv');
    const res = await fetch(`${stack.uploadUrl}/api/v1/uploads`, { method: 'POST', body: form, headers: auth(UPLOAD_TOKEN) });
    expect(res.status).toBe(202);
    const status = await waitUntilSettled(((await res.json()) as any).id);
    expect(status).toMatchObject({ state: 'done', rows_stored: 25, filename: 'small.csv' });
  });

  it('requires a bearer token with the upload scope', async () => {
    const none = await fetch(`${stack.uploadUrl}/api/v1/uploads`, { method: 'POST', body: 'x', headers: { 'content-type': 'text/csv' } });
    expect(none.status).toBe(401);
    const readOnly = await fetch(`${stack.uploadUrl}/api/v1/uploads`, { method: 'POST', body: 'x', headers: { 'content-type': 'text/csv', ...auth(READ_TOKEN) } });
    expect(readOnly.status).toBe(403);
    expect((await fetch(`${stack.queryUrl}/api/v1/gpus`)).status).toBe(401);
  });

  it('re-stamps rows with the processing time when asked', async () => {
    const before = Date.now();
    const res = await upload(syntheticCsv('GPU-restamp', 3), { 'content-type': 'text/csv' }, '?timestamps=processing');
    expect((await waitUntilSettled(res.body.id)).state).toBe('done');
    const { body } = await query('/api/v1/gpus/GPU-restamp-0/telemetry');
    expect(Date.parse(body.data[0].timestamp)).toBeGreaterThanOrEqual(before - 1000);
  });
});

describe('ClickHouse outage', () => {
  it('keeps every batch while ClickHouse is down and stores them all once it is back', async () => {
    const { port, dataDir } = { port: Number(new URL(stack.clickhouse.url).port), dataDir: stack.clickhouse.dataDir };
    await stack.clickhouse.stop({ keepData: true });
    const res = await upload(syntheticCsv('GPU-outage', 40));
    expect(res.status).toBe(202);
    // Ingest finishes (NATS is up) while collect keeps failing and retrying with backoff.
    await waitFor(async () => {
      const s: any = await (await fetch(`${stack.uploadUrl}/api/v1/uploads/${res.body.id}`, { headers: auth(READ_TOKEN) })).json();
      return s.rows_accepted === 40;
    }, 'ingest to finish', 20_000, 200);
    // Longer than WORKER_MAX_DELIVER (5) retries at 200 ms doubling: an outage must not dead-letter.
    await new Promise((r) => setTimeout(r, 4500));
    const restarted = await startClickHouse({ dataDir, port });
    stack.clickhouse = restarted;
    const status = await waitUntilSettled(res.body.id, 60_000);
    expect(status).toMatchObject({ state: 'done', rows_stored: 40 });
    expect(await count("SELECT count() AS n FROM samples WHERE startsWith(uuid, 'GPU-outage-')")).toBe(40);
    const nc = await connect({ servers: stack.nats.url });
    const dlq = await (await nc.jetstreamManager()).streams.info(STREAMS.deadLetter);
    await nc.close();
    expect(dlq.state.messages).toBe(0);
  }, 90_000);
});
