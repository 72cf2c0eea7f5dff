import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ClickHouseClient } from '@clickhouse/client';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clickhouseClient, closeSharedClickHouse } from '../shared/clickhouse.ts';
import { parseEnv, type ClickHouseConfig } from '../shared/config.ts';
import type { HttpHandler } from '../shared/http.ts';
import { closeSharedNats, connectNats } from '../shared/nats.ts';
import { provisionClickHouse } from '../shared/provision.ts';
import { recomputeRollups } from '../shared/rollups.ts';
import { queryEnv } from '../functions/query/config.ts';
import { createQueryHandler } from '../functions/query/index.ts'; // registers 'query' with the Functions Framework
import { gpuPageSchema } from '../functions/query/fleet-schemas.ts';
import { metricListSchema, summarySchema, telemetrySchema } from '../functions/query/schemas.ts';
import { fixtureRows, insertFixture, type FixtureRow } from './support/fixtures.ts';
import { freePort } from './support/ports.ts';
import { startClickHouse, startNats, type NatsServer, type RunningServer } from './support/servers.ts';

// The query API against a real ClickHouse holding the real DCGM fixture (inserted directly, in
// the same column layout collect uses), and a real nats-server for readiness.

const DB = 'query_api_test';
const EMPTY_DB = 'query_api_empty';
const GPU = 'GPU-5fd4f087-86f3-7a43-b711-4771313afc50';
const UNKNOWN = 'GPU-00000000-0000-0000-0000-000000000000';

let clickhouse: RunningServer;
let nats: NatsServer;
let chConfig: ClickHouseConfig;
const clients: ClickHouseClient[] = [];
const connections: Promise<NatsConnection>[] = [];
const servers: Server[] = [];

async function listen(handler: HttpHandler): Promise<string> {
  const server = createServer((req, res) => void handler(req, res));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A query function on its own port, configured like production (from env-style variables). */
async function startQuery(env: Record<string, string> = {}, opts: { database?: string; natsUrl?: string } = {}): Promise<string> {
  const cfg = parseEnv(queryEnv, env);
  const client = clickhouseClient(chConfig, { database: opts.database ?? DB });
  clients.push(client);
  let conn: Promise<NatsConnection> | undefined;
  return listen(
    createQueryHandler(cfg, {
      clickhouse: () => client,
      nats: () => {
        if (!conn) {
          conn = connectNats('query-test', { NATS_URL: opts.natsUrl ?? nats.url });
          connections.push(conn);
          conn.catch(() => (conn = undefined));
        }
        return conn;
      },
    }),
  );
}

let api: string;
let secured: string;

async function get(path: string, headers: Record<string, string> = {}, base = api) {
  const res = await fetch(base + path, { headers });
  const text = await res.text();
  const type = res.headers.get('content-type') ?? '';
  return { status: res.status, headers: res.headers, text, body: type.includes('json') ? JSON.parse(text) : undefined };
}

const rowsOf = (uuid: string) =>
  fixtureRows()
    .filter((r) => r.uuid === uuid)
    .sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp) || (a.metric_name < b.metric_name ? -1 : a.metric_name > b.metric_name ? 1 : 0));

/** Follows next_cursor from the first page to the last; returns page sizes and all rows. */
async function walk(limit: number, query = ''): Promise<{ sizes: number[]; rows: unknown[] }> {
  const rows: unknown[] = [];
  const sizes: number[] = [];
  let cursor: string | null = null;
  do {
    const qs: string = `limit=${limit}${query}${cursor ? `&cursor=${cursor}` : ''}`;
    const { status, body } = await get(`/api/v1/gpus/${GPU}/telemetry?${qs}`);
    expect(status).toBe(200);
    sizes.push(body.count);
    rows.push(...body.data);
    cursor = body.next_cursor;
  } while (cursor && sizes.length <= 20);
  return { sizes, rows };
}

const labelsOf = (raw: string) => Object.fromEntries([...raw.matchAll(/([\w.]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));

const expectedSample = (r: FixtureRow) => ({
  timestamp: new Date(Date.parse(r.timestamp)).toISOString(),
  metric_name: r.metric_name,
  value: Number(r.value),
  gpu_id: r.gpu_id,
  device: r.device,
  uuid: r.uuid,
  model_name: r.modelName,
  hostname: r.Hostname,
  container: r.container,
  pod: r.pod,
  namespace: r.namespace,
  labels_raw: r.labels_raw,
  labels: labelsOf(r.labels_raw),
});

beforeAll(async () => {
  [clickhouse, nats] = await Promise.all([startClickHouse(), startNats()]);
  chConfig = { CLICKHOUSE_URL: clickhouse.url, CLICKHOUSE_USER: 'default', CLICKHOUSE_PASSWORD: '', CLICKHOUSE_DATABASE: DB };
  const admin = clickhouseClient(chConfig, { database: null });
  clients.push(admin);
  await provisionClickHouse(admin, DB);
  await provisionClickHouse(admin, EMPTY_DB);
  expect(await insertFixture(admin, DB, { uploadId: 'fixture-upload' })).toBe(2470);
  // What collect does after storing batches: the rollups /api/v1/gpus and /api/v1/metrics read.
  const db = clickhouseClient(chConfig);
  clients.push(db);
  await recomputeRollups(db, Array.from({ length: 5 }, (_, i) => `fixture-upload.0.${i}`));
  api = await startQuery();
  secured = await startQuery({ API_TOKENS: 'reader-token:read,uploader-token:upload' });
}, 120_000);

afterAll(async () => {
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  await Promise.allSettled(connections.map(async (c) => (await c).close()));
  await Promise.allSettled([...clients.map((c) => c.close()), closeSharedClickHouse(), closeSharedNats()]);
  await Promise.allSettled([clickhouse?.stop(), nats?.stop()]);
});

describe('GET /api/v1/gpus', () => {
  it('lists the 247 GPUs of the fixture in uuid order, each with its 10 metrics', async () => {
    const { status, body } = await get('/api/v1/gpus?limit=1000');
    expect(status).toBe(200);
    const parsed = gpuPageSchema.parse(body);
    const uuids = [...new Set(fixtureRows().map((r) => r.uuid))].sort();
    expect(parsed.count).toBe(247);
    expect(parsed.gpus.map((g) => g.uuid)).toEqual(uuids);
    for (const g of parsed.gpus) {
      const rows = rowsOf(g.uuid);
      expect(g.samples).toBe(10);
      expect(g.metrics).toEqual([...new Set(rows.map((r) => r.metric_name))].sort());
      expect(g.metrics).toHaveLength(10);
      expect(g.hostname).toBe(rows[0].Hostname);
      expect(g.model_name).toBe(rows[0].modelName);
      expect(g.gpu_id).toBe(rows[0].gpu_id);
      expect(g.first_seen).toBe(new Date(Date.parse(rows[0].timestamp)).toISOString());
      expect(g.last_seen).toBe(new Date(Date.parse(rows.at(-1)!.timestamp)).toISOString());
    }
    expect(parsed.gpus[0].first_seen).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  });

  it('answers an empty store with an empty list', async () => {
    const empty = await startQuery({}, { database: EMPTY_DB });
    expect((await get('/api/v1/gpus', {}, empty)).body).toEqual({ gpus: [], count: 0, next_cursor: null });
    expect((await get('/api/v1/metrics', {}, empty)).body).toEqual({ metrics: [], count: 0 });
    expect((await get(`/api/v1/gpus/${GPU}/telemetry`, {}, empty)).status).toBe(404);
  });

  it('rejects unknown parameters', async () => {
    const { status, body } = await get('/api/v1/gpus?page=2');
    expect(status).toBe(400);
    expect(body.error.message).toContain('page');
  });
});

describe('GET /api/v1/gpus/{uuid}/telemetry', () => {
  it("returns the GPU's 10 CSV rows in ascending time order", async () => {
    const { status, body } = await get(`/api/v1/gpus/${GPU}/telemetry`);
    expect(status).toBe(200);
    const parsed = telemetrySchema.parse(body);
    const expected = rowsOf(GPU).map(expectedSample);
    expect(expected).toHaveLength(10);
    expect(parsed.data).toEqual(expected);
    expect(Object.keys(body.data[0]).sort()).toEqual(Object.keys(expected[0]).sort()); // no internal columns
    expect(parsed).toMatchObject({ uuid: GPU, count: 10, next_cursor: null, filters: { start_time: null, end_time: null, metric: null, limit: 1000 } });
    const times = parsed.data.map((d) => Date.parse(d.timestamp));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(parsed.data.find((d) => d.metric_name === 'DCGM_FI_DEV_POWER_USAGE')!.value).toBe(156.596);
    expect(parsed.data[0].labels).toMatchObject({ UUID: GPU, Hostname: 'mtv5-dgx1-hgpu-031', job: 'dgx_dcgm_exporter' });
  });

  it('treats start_time and end_time as inclusive', async () => {
    const { body } = await get(`/api/v1/gpus/${GPU}/telemetry?start_time=2025-07-18T20:42:35Z&end_time=2025-07-18T20:42:35Z`);
    expect(body.count).toBe(3);
    expect(body.data.map((d: { timestamp: string }) => d.timestamp)).toEqual(Array(3).fill('2025-07-18T20:42:35.000Z'));
    expect(body.data.map((d: { metric_name: string }) => d.metric_name)).toEqual(['DCGM_FI_DEV_FB_FREE', 'DCGM_FI_DEV_FB_USED', 'DCGM_FI_DEV_GPU_TEMP']);
    expect(body.filters).toMatchObject({ start_time: '2025-07-18T20:42:35.000Z', end_time: '2025-07-18T20:42:35.000Z' });
  });

  it('accepts offsets and fractional seconds and either bound alone', async () => {
    const offset = await get(`/api/v1/gpus/${GPU}/telemetry?start_time=${encodeURIComponent('2025-07-18T22:42:35.000+02:00')}&end_time=2025-07-18T20:42:36.999999Z`);
    expect(offset.body.data.map((d: { timestamp: string }) => d.timestamp)).toEqual([...Array(3).fill('2025-07-18T20:42:35.000Z'), '2025-07-18T20:42:36.000Z']);
    const justAfter = await get(`/api/v1/gpus/${GPU}/telemetry?start_time=2025-07-18T20:42:35.0001Z`);
    expect(justAfter.body.count).toBe(4); // :35 excluded, :36 and :37 kept
    const onlyEnd = await get(`/api/v1/gpus/${GPU}/telemetry?end_time=2025-07-18T20:42:34Z`);
    expect(onlyEnd.body.count).toBe(3);
  });

  it('filters by metric', async () => {
    const { body } = await get(`/api/v1/gpus/${GPU}/telemetry?metric=DCGM_FI_DEV_SM_CLOCK`);
    expect(body.data).toEqual([expectedSample(rowsOf(GPU).find((r) => r.metric_name === 'DCGM_FI_DEV_SM_CLOCK')!)]);
    expect(body.filters.metric).toBe('DCGM_FI_DEV_SM_CLOCK');
    const none = await get(`/api/v1/gpus/${GPU}/telemetry?metric=NO_SUCH_METRIC`);
    expect(none.status).toBe(200);
    expect(none.body).toMatchObject({ count: 0, data: [], next_cursor: null });
  });

  it('walks all rows with limit=3 through next_cursor, without gaps or duplicates', async () => {
    expect(await walk(3)).toEqual({ sizes: [3, 3, 3, 1], rows: rowsOf(GPU).map(expectedSample) });
  });

  it.each([1, 2, 4, 7])('walks the same rows with limit=%i (pages splitting equal timestamps)', async (limit) => {
    const { sizes, rows } = await walk(limit);
    expect(rows).toEqual(rowsOf(GPU).map(expectedSample));
    expect(sizes).toHaveLength(Math.ceil(10 / limit));
  });

  it('pages exactly at the end: a full last page has no next cursor', async () => {
    const first = await get(`/api/v1/gpus/${GPU}/telemetry?limit=5`);
    const second = await get(`/api/v1/gpus/${GPU}/telemetry?limit=5&cursor=${first.body.next_cursor}`);
    expect([first.body.count, second.body.count, second.body.next_cursor]).toEqual([5, 5, null]);
  });

  it('refuses a cursor from a different query', async () => {
    const first = await get(`/api/v1/gpus/${GPU}/telemetry?limit=3`);
    const other = await get(`/api/v1/gpus/${GPU}/telemetry?limit=3&metric=DCGM_FI_DEV_GPU_UTIL&cursor=${first.body.next_cursor}`);
    expect(other.status).toBe(400);
    expect(other.body.error.details.parameters[0].parameter).toBe('cursor');
  });

  it('refuses a tampered cursor with 400 naming cursor (an unsigned one used to yield another page)', async () => {
    const first = await get(`/api/v1/gpus/${GPU}/telemetry?limit=3`);
    const [body, mac] = String(first.body.next_cursor).split('.');
    const content = JSON.parse(Buffer.from(body, 'base64url').toString()) as unknown[];
    content[content.length - 1] = 0; // another position in the same query
    const tampered = `${Buffer.from(JSON.stringify(content)).toString('base64url')}.${mac}`;
    const res = await get(`/api/v1/gpus/${GPU}/telemetry?limit=3&cursor=${tampered}`);
    expect(res.status).toBe(400);
    expect(res.body.error.details.parameters).toEqual([expect.objectContaining({ parameter: 'cursor' })]);
    expect(res.body.error.message).toMatch(/^cursor was not issued by this API or was altered/);
  });

  it('accepts cursors across replicas sharing CURSOR_SECRET and through a key rotation', async () => {
    const oldKey = 'the-old-cursor-secret-0123456789abcdef';
    const newKey = 'the-new-cursor-secret-0123456789abcdef';
    const [a, b] = await Promise.all([startQuery({ CURSOR_SECRET: oldKey }), startQuery({ CURSOR_SECRET: oldKey })]);
    const first = await get(`/api/v1/gpus/${GPU}/telemetry?limit=4`, {}, a);
    const second = await get(`/api/v1/gpus/${GPU}/telemetry?limit=4&cursor=${first.body.next_cursor}`, {}, b);
    expect(second.status).toBe(200);
    // Rotated: the new key signs, the old one is still accepted.
    const rotated = await startQuery({ CURSOR_SECRET: newKey, CURSOR_SECRET_PREVIOUS: oldKey });
    const third = await get(`/api/v1/gpus/${GPU}/telemetry?limit=4&cursor=${second.body.next_cursor}`, {}, rotated);
    expect(third.status).toBe(200);
    expect([first.body.count, second.body.count, third.body.count]).toEqual([4, 4, 2]);
    // After the rotation window: cursors of the old key are refused, naming cursor.
    const after = await startQuery({ CURSOR_SECRET: newKey });
    const refused = await get(`/api/v1/gpus/${GPU}/telemetry?limit=4&cursor=${first.body.next_cursor}`, {}, after);
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toMatch(/^cursor /);
    // Another process without the secret (random key) refuses them too.
    expect((await get(`/api/v1/gpus/${GPU}/telemetry?limit=4&cursor=${first.body.next_cursor}`)).status).toBe(400);
  });

  it('404s a GPU that was never seen', async () => {
    const { status, body } = await get(`/api/v1/gpus/${UNKNOWN}/telemetry`);
    expect(status).toBe(404);
    expect(body.error.code).toBe('gpu_not_found');
  });

  it.each([
    ['start_time', 'start_time=2025-07-18'],
    ['end_time', 'end_time=20:42:35'],
    ['limit', 'limit=0'],
    ['limit', 'limit=abc'],
    ['limit', 'limit=10001'],
    ['cursor', 'cursor=garbage%21'],
    ['cursor', 'cursor=Zm9v'],
  ])('400s a bad %s before the existence check (unknown and known GPU)', async (name, qs) => {
    for (const uuid of [UNKNOWN, GPU]) {
      const { status, body, headers } = await get(`/api/v1/gpus/${uuid}/telemetry?${qs}`);
      expect(status).toBe(400);
      expect(headers.get('content-type')).toContain('application/json');
      expect(body.error.code).toBe('invalid_parameter');
      expect(body.error.message).toContain(name);
    }
  });

  it('400s start_time after end_time, even for an unknown GPU', async () => {
    const { status, body } = await get(`/api/v1/gpus/${UNKNOWN}/telemetry?start_time=2025-07-18T20:42:36Z&end_time=2025-07-18T20:42:35Z`);
    expect(status).toBe(400);
    expect(body.error.message).toContain('start_time');
  });

  it('answers a known GPU with an empty window with 200 and no data', async () => {
    const { status, body } = await get(`/api/v1/gpus/${GPU}/telemetry?start_time=2030-01-01T00:00:00Z`);
    expect(status).toBe(200);
    expect(body).toMatchObject({ uuid: GPU, count: 0, data: [], next_cursor: null });
    const farPast = await get(`/api/v1/gpus/${GPU}/telemetry?end_time=1900-01-01T00:00:00Z`);
    expect(farPast.body.count).toBe(0);
    // The same rule as stored timestamps: an instant the store cannot hold is a bad parameter.
    const outside = await get(`/api/v1/gpus/${GPU}/telemetry?end_time=0001-01-01T00:00:00Z`);
    expect(outside.status).toBe(400);
    expect(outside.body.error.message).toMatch(/^end_time is outside the range the store can hold/);
  });
});

describe('telemetry samples as ClickHouse writes them', () => {
  // The samples of a page go out as ClickHouse's JSON text, not parsed and re-serialised: the
  // answer must parse to exactly what the parsed rows gave (values, escapes, labels), with the
  // private columns cut even when a label is named like one.
  it('parse to the stored rows for awkward values, strings and labels', async () => {
    const db = 'query_api_text';
    const admin = clickhouseClient(chConfig, { database: null });
    clients.push(admin);
    await provisionClickHouse(admin, db);
    const uuid = 'GPU-text-0000-0000-0000-000000000001';
    const base = { gpu_id: '0', device: 'nvidia0', uuid, modelName: 'NVIDIA H100 80GB HBM3', container: '', pod: '', namespace: '' };
    const odd = [
      { value: '-0', labels_raw: 'a="1",batch_id="b,\\"line\\":7",10="ten",2="two"', Hostname: 'a/b "quoted" \\ back' },
      { value: '1e21', labels_raw: 'k="\u2028\u2029 é 😀 <tag> \t"', Hostname: 'host\u0001\u001f' },
      { value: '1.7976931348623157e308', labels_raw: '', Hostname: ',"batch_id":"fake","line":1}' },
      { value: '5e-324', labels_raw: 'job="dcgm"', Hostname: 'h' },
      { value: '0.1', labels_raw: 'job="dcgm"', Hostname: 'h' },
    ];
    const rows = odd.map((o, i) => ({ ...base, ...o, timestamp: `2025-07-18T20:42:3${i}Z`, metric_name: 'DCGM_FI_DEV_GPU_TEMP', line: i + 2 }));
    await insertFixture(admin, db, { uploadId: 'text-upload', rows });
    const text = await startQuery({}, { database: db });
    const reference = await (
      await admin.query({
        query: `SELECT timestamp, metric_name, value, gpu_id, device, uuid, model_name, hostname, container, pod, namespace, labels_raw, labels
                FROM ${db}.samples WHERE uuid = {uuid:String} ORDER BY timestamp`,
        query_params: { uuid },
        format: 'JSONEachRow',
        clickhouse_settings: { output_format_json_quote_64bit_integers: 0, date_time_output_format: 'iso' },
      })
    ).json<Record<string, unknown>>();
    expect(reference).toHaveLength(5);
    reference[0].value = 0; // -0 answers 0, as JSON.stringify writes it
    for (const limit of [5, 2]) {
      const seen: unknown[] = [];
      let cursor: string | null = null;
      do {
        const page = await get(`/api/v1/gpus/${uuid}/telemetry?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, {}, text);
        expect(page.status).toBe(200);
        const parsed = telemetrySchema.parse(page.body);
        expect(Object.keys(page.body)).toEqual(['uuid', 'filters', 'count', 'data', 'next_cursor']);
        expect(parsed.count).toBe(parsed.data.length);
        seen.push(...page.body.data);
        cursor = page.body.next_cursor;
      } while (cursor);
      expect(seen).toEqual(reference);
      expect(Object.is((seen[0] as { value: number }).value, 0)).toBe(true);
    }
    // GraphQL answers the same samples (parsed from the same text).
    const gql = await fetch(`${text}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: `{ gpu(uuid: "${uuid}") { telemetry(limit: 5) { count data { value hostname labels } } } }` }),
    }).then((r) => r.json());
    expect(gql.data.gpu.telemetry.data).toEqual(reference.map((r) => ({ value: r.value, hostname: r.hostname, labels: r.labels })));
  });
});

describe('GET /api/v1/gpus/{uuid}/summary', () => {
  it('aggregates each metric of the GPU', async () => {
    const { status, body } = await get(`/api/v1/gpus/${GPU}/summary`);
    expect(status).toBe(200);
    const parsed = summarySchema.parse(body);
    const rows = rowsOf(GPU);
    expect(parsed.count).toBe(10);
    expect(parsed.metrics.map((m) => m.metric_name)).toEqual(rows.map((r) => r.metric_name).sort());
    for (const m of parsed.metrics) {
      const r = rows.find((x) => x.metric_name === m.metric_name)!;
      const t = new Date(Date.parse(r.timestamp)).toISOString();
      expect(m).toEqual({ metric_name: r.metric_name, count: 1, min: Number(r.value), max: Number(r.value), avg: Number(r.value), first_timestamp: t, last_timestamp: t, last_value: Number(r.value) });
    }
  });

  it('honours the window and the parameter rules', async () => {
    const window = await get(`/api/v1/gpus/${GPU}/summary?start_time=2025-07-18T20:42:35Z&end_time=2025-07-18T20:42:35Z`);
    expect(window.body.metrics.map((m: { metric_name: string }) => m.metric_name)).toEqual(['DCGM_FI_DEV_FB_FREE', 'DCGM_FI_DEV_FB_USED', 'DCGM_FI_DEV_GPU_TEMP']);
    expect((await get(`/api/v1/gpus/${GPU}/summary?start_time=2030-01-01T00:00:00Z`)).body).toMatchObject({ count: 0, metrics: [] });
    expect((await get(`/api/v1/gpus/${UNKNOWN}/summary`)).status).toBe(404);
    expect((await get(`/api/v1/gpus/${UNKNOWN}/summary?end_time=nope`)).status).toBe(400);
    expect((await get(`/api/v1/gpus/${GPU}/summary?start_time=2025-07-18T20:42:36Z&end_time=2025-07-18T20:42:35Z`)).status).toBe(400);
  });
});

describe('GET /api/v1/metrics', () => {
  it('lists the 10 metrics with totals matching the CSV', async () => {
    const { status, body } = await get('/api/v1/metrics');
    expect(status).toBe(200);
    const parsed = metricListSchema.parse(body);
    const names = [...new Set(fixtureRows().map((r) => r.metric_name))].sort();
    expect(parsed.metrics.map((m) => m.metric_name)).toEqual(names);
    for (const m of parsed.metrics) {
      const values = fixtureRows().filter((r) => r.metric_name === m.metric_name).map((r) => Number(r.value));
      expect(m.samples).toBe(247);
      expect(m.gpus).toBe(247);
      expect(m.min).toBe(Math.min(...values));
      expect(m.max).toBe(Math.max(...values));
      expect(m.avg).toBeCloseTo(values.reduce((a, b) => a + b, 0) / values.length, 6);
    }
  });
});

describe('under the Functions Framework', () => {
  it('serves the handler registered as "query", configured from the environment', async () => {
    Object.assign(process.env, { CLICKHOUSE_URL: clickhouse.url, CLICKHOUSE_DATABASE: DB, NATS_URL: nats.url, API_TOKENS: '' });
    const { getTestServer } = await import('@google-cloud/functions-framework/testing');
    const server = getTestServer('query');
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const gpus = await get('/api/v1/gpus?limit=1000', {}, base);
    expect(gpus.status).toBe(200);
    expect(gpus.body.count).toBe(247);
    const page = await get(`/api/v1/gpus/${GPU}/telemetry?limit=4`, {}, base);
    expect(page.body.count).toBe(4);
    expect((await get('/readyz', {}, base)).status).toBe(200);
    expect((await get('/api/v1/gpus/x/telemetry?limit=0', {}, base)).status).toBe(400);
  });
});

describe('HTTP behaviour', () => {
  it('404s an unknown route and 405s a wrong method, as JSON', async () => {
    const missing = await get('/api/v1/nothing');
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('not_found');
    const wrong = await fetch(`${api}/api/v1/gpus`, { method: 'POST' });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('GET');
    expect((await wrong.json()).error.code).toBe('method_not_allowed');
  });

  it('serves the OpenAPI document, Swagger UI and the console from local files under a strict CSP', async () => {
    const { status, body } = await get('/openapi.json');
    expect(status).toBe(200);
    expect(body.paths['/api/v1/gpus/{uuid}/telemetry'].get.operationId).toBe('gpuTelemetry');
    for (const page of ['/docs', '/']) {
      const html = await get(page);
      expect(html.status, page).toBe(200);
      const csp = html.headers.get('content-security-policy')!;
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain('unsafe');
      // Every script and stylesheet is a file of this origin; no inline script, nothing remote.
      expect(html.text).not.toMatch(/<script(?![^>]*\bsrc="assets\/)[^>]*>/);
      expect(html.text).not.toMatch(/(src|href)="(https?:)?\/\//);
      for (const [, asset] of html.text.matchAll(/(?:src|href)="(assets\/[^"]+)"/g)) expect((await get(`/${asset}`)).status, asset).toBe(200);
    }
    expect((await get('/docs')).text).toContain('assets/swagger-ui-bundle.js');
    expect((await get('/assets/docs.js')).text).toContain('openapi.json');
    expect((await get('/assets/nope.js')).status).toBe(404);
  });

  it('exposes Prometheus metrics including its own request latencies', async () => {
    await get('/api/v1/gpus');
    const { status, text, headers } = await get('/metrics');
    expect(status).toBe(200);
    expect(headers.get('content-type')).toContain('text/plain');
    expect(text).toMatch(/gputel_http_request_duration_seconds_count\{[^}]*function="query"[^}]*route="\/api\/v1\/gpus"/);
  });

  it('needs the read scope when API_TOKENS is set; operational routes stay open', async () => {
    for (const path of ['/api/v1/gpus', `/api/v1/gpus/${GPU}/telemetry`, `/api/v1/gpus/${GPU}/summary`, '/api/v1/metrics', '/openapi.json']) {
      expect((await get(path, {}, secured)).status, path).toBe(401);
      expect((await get(path, { authorization: 'Bearer wrong' }, secured)).status, path).toBe(401);
      expect((await get(path, { authorization: 'Bearer uploader-token' }, secured)).status, path).toBe(403);
      expect((await get(path, { authorization: 'Bearer reader-token' }, secured)).status, path).toBe(200);
    }
    const denied = await get('/api/v1/gpus', {}, secured);
    expect(denied.body.error.code).toBe('unauthorized');
    for (const path of ['/healthz', '/readyz', '/metrics']) expect((await get(path, {}, secured)).status, path).toBe(200);
  });

  it('is ready with ClickHouse and NATS up, and not ready without NATS', async () => {
    expect(await get('/readyz')).toMatchObject({ status: 200, body: { status: 'ready' } });
    const noNats = await startQuery({}, { natsUrl: `nats://127.0.0.1:${await freePort()}` });
    const { status, body } = await get('/readyz', {}, noNats);
    expect(status).toBe(503);
    expect(body.problems).toEqual([expect.stringContaining('NATS')]);
    expect((await get('/healthz', {}, noNats)).status).toBe(200);
  });

  // Last: stops ClickHouse.
  it('reports 503 on /readyz and a retryable 503 (no internals) on the API when ClickHouse is down', async () => {
    await clickhouse.stop();
    const ready = await get('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.problems).toEqual([expect.stringContaining('ClickHouse')]);
    expect((await get('/healthz')).status).toBe(200);
    const failed = await get('/api/v1/gpus');
    expect(failed.status).toBe(503);
    expect(failed.headers.get('retry-after')).toBe('5');
    expect(failed.body).toEqual({ error: { code: 'unavailable', message: 'a backing service is unavailable; retry shortly' } });
  });
});
