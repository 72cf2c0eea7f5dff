import { request } from 'node:http';
import { networkInterfaces } from 'node:os';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { connect, type KV, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUCKETS } from '../shared/names.ts';
import { uploadRecord, type UploadRecord } from '../shared/schemas.ts';
import { keysOf } from '../functions/upload/parts.ts';
import { startStack, type FunctionProcess, type Stack } from './local/stack.ts';
import { syntheticCsv, syntheticRow } from './support/csv.ts';
import { bucketState } from './support/object-store-state.ts';
import { freePort, waitFor } from './support/ports.ts';
import { rawHttp } from './support/raw-http.ts';

// The upload lifecycle through real processes: an upload whose process is killed (-9) mid-body
// is failed by another replica within the lease, keeps its announced parts, leaves nothing in
// the object store, and a retry with the same Idempotency-Key stores every row exactly once.
// Also: Idempotency-Key semantics, server timeouts (slow-but-steady upload, idle client, slow
// headers) and readiness that reflects a NATS round trip without leaking internals.

const LEASE_MS = 3000;
const REAP_MS = 500;
const TOKEN_A = 'tok-a';
const TOKEN_B = 'tok-b';
/** Allowance for KV round trips and scheduling on a loaded machine (not part of the documented bound). */
const SLACK_MS = 10_000;

let stack: Stack;
let ch: ClickHouseClient;
let nc: NatsConnection;
let kv: KV;
let uploadPort: number;

const auth = (token = TOKEN_A) => ({ authorization: `Bearer ${token}` });

async function record(id: string): Promise<UploadRecord | undefined> {
  const e = await kv.get(id);
  return e && e.operation === 'PUT' ? uploadRecord.parse(e.json()) : undefined;
}

const keys = (filter: string) => keysOf(nc, filter);
const activeIds = async () => (await keys('active.*')).map((k) => k.slice('active.'.length));

async function statusOf(id: string, base = stack.uploadUrl): Promise<any> {
  return (await fetch(`${base}/api/v1/uploads/${id}`, { headers: auth() })).json();
}

async function settled(id: string, timeoutMs = 60_000): Promise<any> {
  let s: any;
  await waitFor(async () => {
    s = await statusOf(id);
    return s.state === 'done' || (s.state === 'failed' && s.parts_ingested >= (s.parts ?? 0) && s.rows_stored >= s.rows_accepted);
  }, `upload ${id} to settle`, timeoutMs, 200);
  return s;
}

/** The upload's parts are all deleted (ingested or unannounced) and no chunk lacks its meta. */
async function expectNoObjectsLeft(id: string): Promise<void> {
  await waitFor(async () => (await bucketState(nc, BUCKETS.objects)).live.every((o) => !o.name.startsWith(`${id}/`)), 'ingested parts deleted', 20_000, 200);
  expect((await bucketState(nc, BUCKETS.objects)).orphanChunks).toEqual([]);
}

async function countRows(id: string): Promise<{ rows: number; distinct: number }> {
  const rs = await ch.query({
    query: 'SELECT count() AS rows, uniqExact(uuid, metric_name, timestamp) AS distinct FROM samples WHERE upload_id = {id:String}',
    query_params: { id },
    format: 'JSONEachRow',
  });
  const [r] = (await rs.json()) as { rows: string; distinct: string }[];
  return { rows: Number(r.rows), distinct: Number(r.distinct) };
}

function uploadProcess(): FunctionProcess {
  return stack.processes.find((p) => p.name.startsWith('upload#') && p.process.exitCode === null && p.process.signalCode === null)!;
}

async function startUpload(env: Record<string, string>): Promise<{ port: number; url: string; proc: FunctionProcess }> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const proc = stack.startFunction('upload', { ...env, PORT: String(port) });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    if (proc.process.exitCode !== null) throw new Error(`upload exited:\n${proc.output.join('\n')}`);
    return (await fetch(`${url}/healthz`)).ok;
  }, 'upload /healthz', 60_000, 100);
  return { port, url, proc };
}

beforeAll(async () => {
  stack = await startStack({
    env: {
      API_TOKENS: `${TOKEN_A}:upload+read,${TOKEN_B}:upload+read`,
      UPLOAD_LEASE_MS: String(LEASE_MS),
      UPLOAD_REAP_INTERVAL_MS: String(REAP_MS),
      UPLOAD_PART_BYTES: String(64 * 1024),
      UPLOAD_MAX_BYTES: String(8 * 1024 * 1024),
      INGEST_BATCH_ROWS: '300',
      COLLECT_MAX_WAIT_MS: '1000',
    },
  });
  uploadPort = Number(new URL(stack.uploadUrl).port);
  ch = createClient({ url: stack.clickhouse.url, database: 'telemetry' });
  nc = await connect({ servers: stack.nats.url });
  kv = await nc.jetstream().views.kv(BUCKETS.status);
}, 120_000);

afterAll(async () => {
  await nc?.close();
  await ch?.close();
  await stack?.stop();
});

describe('an upload whose process is killed mid-body', () => {
  const KEY = 'kill-test-upload-1';
  const ROWS = 6000;
  const body = Buffer.from(syntheticCsv('GPU-kill', ROWS));
  let id: string;

  it('is failed by another replica within the lease, keeps and counts its announced parts, leaves no orphans', async () => {
    const req = request({
      port: uploadPort,
      method: 'POST',
      path: '/api/v1/uploads',
      headers: { 'content-type': 'text/csv', 'content-length': body.length, 'idempotency-key': KEY, ...auth() },
    });
    req.on('error', () => undefined);
    req.write(body.subarray(0, Math.floor(body.length * 0.6)));
    // Several parts stored and announced (the Content-Length is declared): ingest is under way.
    let before: UploadRecord | undefined;
    await waitFor(async () => {
      const [active] = await activeIds();
      before = active ? await record(active) : undefined;
      return (before?.announced ?? 0) >= 3;
    }, 'parts announced', 30_000, 50);
    id = before!.id;

    const victim = uploadProcess();
    const killedAt = Date.now();
    victim.process.kill('SIGKILL');
    await stack.stopFunction(victim);
    req.destroy();
    expect((await record(id))?.state).toBe('receiving');

    // A new replica (the killed one's replacement) sweeps: no status read is needed.
    const replica = await startUpload({ PORT: String(uploadPort) });
    const healthyAt = Date.now();
    let failedAt = 0;
    await waitFor(async () => {
      if ((await record(id))?.state !== 'failed') return false;
      failedAt = Date.now();
      return true;
    }, 'the reaper to fail the upload', LEASE_MS + REAP_MS + SLACK_MS + (healthyAt - killedAt), 100);
    // Documented bound: UPLOAD_LEASE_MS + UPLOAD_REAP_INTERVAL_MS after the kill, once a replica runs.
    const bound = Math.max(killedAt + LEASE_MS, healthyAt) + REAP_MS;
    console.log(`kill -9 → failed: ${failedAt - killedAt} ms (replacement healthy after ${healthyAt - killedAt} ms; bound ${bound - killedAt} ms + slack)`);
    expect(failedAt).toBeLessThanOrEqual(bound + SLACK_MS);
    expect(replica.proc.process.exitCode).toBeNull();

    const status = await settled(id);
    expect(status.state).toBe('failed');
    expect(status.partial).toBe(true);
    expect(status.error).toMatch(/interrupted/);
    expect(status.error).toMatch(/kept and ingested/);
    expect(status.parts).toBeGreaterThanOrEqual(3);
    expect(status.parts_ingested).toBe(status.parts);
    expect(status.rows_stored).toBe(status.rows_accepted);
    expect(status.rows_accepted).toBeGreaterThan(0);
    expect(status.rows_accepted).toBeLessThan(ROWS);
    expect(await countRows(id)).toEqual({ rows: status.rows_accepted, distinct: status.rows_accepted });
    expect(await activeIds()).not.toContain(id);

    // Nothing orphaned: unannounced parts deleted, chunks without a meta purged, ingested parts deleted.
    await expectNoObjectsLeft(id);
  }, 120_000);

  it('a retry with the same Idempotency-Key restarts it under the same id and stores every row exactly once', async () => {
    const res = await fetch(`${stack.uploadUrl}/api/v1/uploads`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'text/csv', 'idempotency-key': KEY, ...auth() },
    });
    expect(res.status).toBe(202);
    const answer = (await res.json()) as any;
    expect(answer.id).toBe(id);
    const status = await settled(id);
    expect(status).toMatchObject({ state: 'done', attempt: 2, rows_accepted: ROWS, rows_rejected: 0, rows_stored: ROWS });
    expect(status.partial).toBeUndefined();
    expect(await countRows(id)).toEqual({ rows: ROWS, distinct: ROWS });
    await expectNoObjectsLeft(id);
  }, 120_000);

  it('a retry of the done upload answers 202 with the same upload, without reading or storing the body again', async () => {
    const res = await fetch(`${stack.uploadUrl}/api/v1/uploads`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'text/csv', 'idempotency-key': KEY, ...auth() },
    });
    expect(res.status).toBe(202);
    expect(res.headers.get('idempotent-replayed')).toBe('true');
    expect(await res.json()).toMatchObject({ id, state: 'done', replayed: true });
    expect(await countRows(id)).toEqual({ rows: ROWS, distinct: ROWS });
  });
});

describe('Idempotency-Key', () => {
  const csv = syntheticCsv('GPU-idem', 40);
  const post = (key: string, token = TOKEN_A, body: string = csv) =>
    fetch(`${stack.uploadUrl}/api/v1/uploads`, { method: 'POST', body, headers: { 'content-type': 'text/csv', 'idempotency-key': key, ...auth(token) } });

  it('is scoped to the bearer token: the same key of another token is another upload', async () => {
    const a = (await (await post('shared-key')).json()) as any;
    const b = (await (await post('shared-key', TOKEN_B)).json()) as any;
    expect(a.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(b.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(b.id).not.toBe(a.id);
    expect((await settled(a.id)).state).toBe('done');
    expect((await settled(b.id)).state).toBe('done');
  });

  it('answers 409 to a retry while the first request is still being received, and 422 for another body under the key', async () => {
    const body = Buffer.from(csv);
    const first = rawHttp(uploadPort, [
      { send: `POST /api/v1/uploads HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/csv\r\nContent-Length: ${body.length}\r\nIdempotency-Key: busy-key\r\nAuthorization: Bearer ${TOKEN_A}\r\n\r\n` },
      { send: body.subarray(0, 200) },
      { waitMs: 1500 },
      { send: body.subarray(200) },
    ]);
    await waitFor(async () => (await activeIds()).length > 0, 'the first request to be receiving', 10_000, 50);
    const second = await post('busy-key');
    expect(second.status).toBe(409);
    expect(((await second.json()) as any).error.message).toMatch(/being received by another request/);
    const answer = await first;
    expect(answer.status).toBe(202);
    const id = JSON.parse(answer.body).id;
    expect((await settled(id)).state).toBe('done');
    const other = await post('busy-key', TOKEN_A, csv + syntheticRow('GPU-idem-extra', 1) + '\n');
    expect(other.status).toBe(422);
    expect(((await other.json()) as any).error.code).toBe('idempotency_key_reused');
    expect(await countRows(id)).toEqual({ rows: 40, distinct: 40 });
  });
});

describe('server timeouts', () => {
  const csv = Buffer.from(syntheticCsv('GPU-slow', 25));
  const head = (length: number) =>
    `POST /api/v1/uploads HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/csv\r\nContent-Length: ${length}\r\nAuthorization: Bearer ${TOKEN_A}\r\n\r\n`;
  /** The body in 25 pieces, one every 200 ms: about 5 s, steady. */
  const slowSteps = () => [{ send: head(csv.length) }, ...Array.from({ length: 25 }, (_, i) => ({ send: csv.subarray((i * csv.length) / 25, ((i + 1) * csv.length) / 25), waitMs: 200 }))];
  let patient: { port: number; url: string };

  beforeAll(async () => {
    // Idle 3 s against 200 ms between pieces: a loaded machine cannot make the steady client look idle.
    patient = await startUpload({ HTTP_REQUEST_TIMEOUT_MS: '30000', HTTP_IDLE_TIMEOUT_MS: '3000', HTTP_HEADERS_TIMEOUT_MS: '1000' });
  }, 90_000);

  it('a slow but steady upload within HTTP_REQUEST_TIMEOUT_MS is accepted (no 408)', async () => {
    const answer = await rawHttp(patient.port, slowSteps());
    expect(answer.status, answer.body).toBe(202);
    expect(answer.ms).toBeGreaterThan(3000); // it really took longer than the idle timeout overall
    expect((await settled(JSON.parse(answer.body).id)).rows_stored).toBe(25);
  });

  it('the same upload gets 408 when it takes longer than HTTP_REQUEST_TIMEOUT_MS (the setting governs)', async () => {
    const strict = await startUpload({ HTTP_REQUEST_TIMEOUT_MS: '2000', HTTP_IDLE_TIMEOUT_MS: '1500', HTTP_HEADERS_TIMEOUT_MS: '1000' });
    const answer = await rawHttp(strict.port, slowSteps());
    expect(answer.status).toBe(408);
    expect(answer.closed).toBe(true);
  }, 90_000);

  it('a client that stops sending its body is cut off after HTTP_IDLE_TIMEOUT_MS with 408, and the upload fails naming why', async () => {
    const answer = await rawHttp(patient.port, [{ send: head(csv.length) }, { send: csv.subarray(0, 300) }]);
    expect(answer.status).toBe(408);
    expect(answer.closed).toBe(true);
    expect(JSON.parse(answer.body).error.message).toMatch(/sent nothing for 3000 ms/);
    expect(answer.ms).toBeGreaterThanOrEqual(2900);
    let failed: UploadRecord | undefined;
    await waitFor(async () => {
      for (const id of await keys('*')) {
        const r = await record(id);
        if (r?.state === 'failed' && /sent nothing/.test(r.error ?? '')) failed = r;
      }
      return failed !== undefined;
    }, 'the idle upload to be failed', 10_000, 200);
    expect(failed!.lease).toBeUndefined();
  });

  it('a client that never finishes its headers gets 408 after HTTP_HEADERS_TIMEOUT_MS', async () => {
    const answer = await rawHttp(patient.port, [{ send: 'POST /api/v1/uploads HTTP/1.1\r\nHost: x\r\n' }]);
    expect(answer.status).toBe(408);
    expect(answer.closed).toBe(true);
  });
});

describe('binding', () => {
  const external = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
  it.skipIf(!external)('the local stack listens on 127.0.0.1 only (HTTP_HOST defaults to loopback)', async () => {
    expect((await fetch(`${stack.uploadUrl}/healthz`)).status).toBe(200);
    for (const url of [stack.uploadUrl, stack.queryUrl]) {
      await expect(fetch(`http://${external}:${new URL(url).port}/healthz`)).rejects.toThrow();
    }
  });
});

// Last: stops NATS.
describe('readiness', () => {
  it('upload and query /readyz follow a real NATS round trip and never show addresses or error texts', async () => {
    for (const url of [stack.uploadUrl, stack.queryUrl]) {
      const ok = await fetch(`${url}/readyz`);
      expect(ok.status).toBe(200);
    }
    await stack.nats.stop({ keepData: true });
    for (const url of [stack.uploadUrl, stack.queryUrl]) {
      let res: Response | undefined;
      await waitFor(async () => (res = await fetch(`${url}/readyz`)).status === 503, `${url}/readyz 503`, 20_000, 200);
      const text = await res!.text();
      expect(JSON.parse(text)).toEqual({ status: 'unavailable', problems: ['NATS is unavailable'] });
      expect(text).not.toMatch(/127\.0\.0\.1|nats:\/\/|ECONN|\d{4,5}/);
    }
  }, 60_000);
});
