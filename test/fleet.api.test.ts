import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ClickHouseClient } from '@clickhouse/client';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clickhouseClient } from '../shared/clickhouse.ts';
import { parseEnv, type ClickHouseConfig } from '../shared/config.ts';
import { provisionClickHouse } from '../shared/provision.ts';
import { queryEnv } from '../functions/query/config.ts';
import { anomalyPageSchema, gpuPageSchema, hostPageSchema, topSchema } from '../functions/query/fleet-schemas.ts';
import { createQueryHandler } from '../functions/query/index.ts';
import { DOCUMENT_CACHE_MAX_CHARS, documentCache } from '../functions/query/graphql.ts';
import { buildSchema, specifiedRules } from 'graphql/index.js';
import { clickhouseTimestamp, fixtureRows, insertFixture, type FixtureRow } from './support/fixtures.ts';
import { recomputeRollups } from '../shared/rollups.ts';
import { startClickHouse, type RunningServer } from './support/servers.ts';
import { HEADER } from './support/csv.ts';

// The fleet routes against a real ClickHouse: the real DCGM fixture (listings, hosts, top, with
// oracles computed from the CSV) and crafted CSV files for every health flag, including files
// where a flag must not fire. Rollups are recomputed by collect's code after each insert.

const FIXTURE_DB = 'fleet_fixture';
const FLAGS_DB = 'fleet_flags';
const SECRET = 'fleet-test-cursor-secret-0123456789ab';

let clickhouse: RunningServer;
let chConfig: ClickHouseConfig;
const clients: ClickHouseClient[] = [];
const servers: Server[] = [];
let api: string;
let flagsApi: string;

async function startQuery(database: string, env: Record<string, string> = {}): Promise<string> {
  const cfg = parseEnv(queryEnv, { CURSOR_SECRET: SECRET, ...env });
  const client = clickhouseClient(chConfig, { database });
  clients.push(client);
  const handler = createQueryHandler(cfg, { clickhouse: () => client, nats: () => Promise.reject(new Error('not used')) });
  const server = createServer((req, res) => void handler(req, res));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function get(base: string, path: string, headers: Record<string, string> = {}) {
  const res = await fetch(base + path, { headers });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

// ---------------------------------------------------------------------------------------------
// Crafted CSV: four metrics per GPU every 10 s for 30 minutes from T0, neutral unless a scenario
// says otherwise (temperature 50 °C, utilisation 40 %, 30 GB used, no XID).

const T0 = Date.UTC(2026, 2, 1, 0, 0, 0);
const STEP_S = 10;
const SAMPLES = 180;
type Metric = 'DCGM_FI_DEV_GPU_TEMP' | 'DCGM_FI_DEV_GPU_UTIL' | 'DCGM_FI_DEV_FB_USED' | 'DCGM_FI_DEV_XID_ERRORS';
interface Scenario {
  uuid: string;
  host?: string;
  values?: Partial<Record<Metric, (i: number) => number>>;
  pod?: string;
  /** Samples emitted (default all 180). */
  samples?: number;
}
const NEUTRAL: Record<Metric, (i: number) => number> = {
  DCGM_FI_DEV_GPU_TEMP: () => 50,
  DCGM_FI_DEV_GPU_UTIL: () => 40,
  DCGM_FI_DEV_FB_USED: () => 30_000,
  DCGM_FI_DEV_XID_ERRORS: () => 0,
};

const SCENARIOS: Record<string, Scenario> = {
  thermalHot: { uuid: 'GPU-flag-thermal-hot', values: { DCGM_FI_DEV_GPU_TEMP: () => 90 } },
  thermalBrief: { uuid: 'GPU-flag-thermal-brief', values: { DCGM_FI_DEV_GPU_TEMP: (i) => (i < 30 ? 95 : 60) } },
  thermalAtThreshold: { uuid: 'GPU-flag-thermal-at-85', values: { DCGM_FI_DEV_GPU_TEMP: () => 85 } },
  xid: { uuid: 'GPU-flag-xid', values: { DCGM_FI_DEV_XID_ERRORS: (i) => (i === 40 ? 79 : i === 100 ? 48 : 0) } },
  idleMemory: { uuid: 'GPU-flag-idle-memory', values: { DCGM_FI_DEV_GPU_UTIL: () => 0, DCGM_FI_DEV_FB_USED: () => 40_000 } },
  idleDriver: { uuid: 'GPU-flag-idle-driver-reserve', values: { DCGM_FI_DEV_GPU_UTIL: () => 0, DCGM_FI_DEV_FB_USED: () => 4 } },
  idlePod: { uuid: 'GPU-flag-idle-pod', pod: 'train-0', values: { DCGM_FI_DEV_GPU_UTIL: () => 0, DCGM_FI_DEV_FB_USED: () => 4 } },
  utilOnce: { uuid: 'GPU-flag-util-once', values: { DCGM_FI_DEV_GPU_UTIL: (i) => (i === 90 ? 30 : 0) } },
  stale: { uuid: 'GPU-flag-stale', host: 'host-b', samples: 120 },
  healthy: { uuid: 'GPU-flag-healthy', host: 'host-b' },
};

function craftedCsv(s: Scenario): string {
  const lines = [HEADER];
  for (let i = 0; i < (s.samples ?? SAMPLES); i++) {
    const ts = new Date(T0 + i * STEP_S * 1000).toISOString().replace('.000Z', 'Z');
    for (const metric of Object.keys(NEUTRAL) as Metric[]) {
      const value = (s.values?.[metric] ?? NEUTRAL[metric])(i);
      lines.push(`"${ts}","${metric}","0","nvidia0","${s.uuid}","NVIDIA H100 80GB HBM3","${s.host ?? 'host-a'}","${s.pod ? 'main' : ''}","${s.pod ?? ''}","${s.pod ? 'ml' : ''}","${value}","UUID=""${s.uuid}"""`);
    }
  }
  return lines.join('\n') + '\n';
}

const csvRows = (text: string): FixtureRow[] =>
  (parse(text, { columns: true }) as Omit<FixtureRow, 'line'>[]).map((r, i) => ({ ...r, line: i + 2 }));

const WINDOW = `start_time=${new Date(T0).toISOString()}&end_time=${new Date(T0 + 1_800_000).toISOString()}`;

beforeAll(async () => {
  clickhouse = await startClickHouse();
  chConfig = { CLICKHOUSE_URL: clickhouse.url, CLICKHOUSE_USER: 'default', CLICKHOUSE_PASSWORD: '', CLICKHOUSE_DATABASE: FIXTURE_DB };
  const admin = clickhouseClient(chConfig, { database: null });
  clients.push(admin);
  for (const db of [FIXTURE_DB, FLAGS_DB]) await provisionClickHouse(admin, db);
  /** Inserts rows as collect would, then recomputes the rollups of their batches (collect's own code). */
  const store = async (db: string, uploadId: string, rows: FixtureRow[], receivedAt?: string) => {
    await insertFixture(admin, db, { uploadId, rows, receivedAt });
    const client = clickhouseClient(chConfig, { database: db });
    clients.push(client);
    await recomputeRollups(client, Array.from({ length: Math.ceil(rows.length / 500) }, (_, i) => `${uploadId}.0.${i}`));
  };
  // The fixture twice (a re-sent file): every answer below must be as if it was stored once.
  await store(FIXTURE_DB, 'first', fixtureRows());
  await store(FIXTURE_DB, 'again', fixtureRows(), clickhouseTimestamp(new Date(Date.now() + 60_000).toISOString()));
  for (const [i, s] of Object.values(SCENARIOS).entries()) await store(FLAGS_DB, `flags-${i}`, csvRows(craftedCsv(s)));
  [api, flagsApi] = await Promise.all([startQuery(FIXTURE_DB), startQuery(FLAGS_DB, { FLAGS_WINDOW_S: '1800' })]);
}, 180_000);

afterAll(async () => {
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  await Promise.allSettled(clients.map((c) => c.close()));
  await clickhouse?.stop();
});

const fixtureGpus = () => {
  const byUuid = new Map<string, FixtureRow[]>();
  for (const r of fixtureRows()) byUuid.set(r.uuid, [...(byUuid.get(r.uuid) ?? []), r]);
  return byUuid;
};

async function walkGpus(query: string, limit: number) {
  const pages: number[] = [];
  const uuids: string[] = [];
  let cursor: string | null = null;
  do {
    const { status, body } = await get(api, `/api/v1/gpus?limit=${limit}${query}${cursor ? `&cursor=${cursor}` : ''}`);
    expect(status).toBe(200);
    const page = gpuPageSchema.parse(body);
    pages.push(page.gpus.length);
    uuids.push(...page.gpus.map((g) => g.uuid));
    cursor = page.next_cursor;
  } while (cursor && pages.length < 100);
  return { pages, uuids };
}

describe('GET /api/v1/gpus (paged, filtered)', () => {
  it('walks every GPU once by cursor, in uuid order, with exact sample counts despite the re-sent file', async () => {
    const all = [...fixtureGpus().keys()].sort();
    const { pages, uuids } = await walkGpus('', 50);
    expect(pages).toEqual([50, 50, 50, 50, 47]);
    expect(uuids).toEqual(all);
    const { body } = await get(api, '/api/v1/gpus');
    expect(body.gpus).toHaveLength(100); // default limit
    for (const g of body.gpus) expect(g.samples).toBe(10);
  });

  it('filters by hostname, model, metric, uuid prefix and seen window (oracle from the CSV)', async () => {
    const gpus = fixtureGpus();
    const host = fixtureRows()[0].Hostname;
    const expectHost = [...gpus].filter(([, r]) => r[0].Hostname === host).map(([u]) => u).sort();
    expect((await walkGpus(`&hostname=${host}`, 3)).uuids).toEqual(expectHost);
    const model = 'NVIDIA H100 80GB HBM3';
    const expectModel = [...gpus].filter(([, r]) => r[0].modelName === model).map(([u]) => u).sort();
    expect(expectModel.length).toBeGreaterThan(0);
    expect((await walkGpus(`&model_name=${encodeURIComponent(model)}`, 1000)).uuids).toEqual(expectModel);
    expect((await walkGpus('&metric=DCGM_FI_DEV_XID_ERRORS', 1000)).uuids).toEqual([]);
    expect((await walkGpus('&metric=DCGM_FI_DEV_GPU_TEMP', 1000)).uuids).toHaveLength(gpus.size);
    const prefix = 'GPU-5';
    expect((await walkGpus(`&uuid_prefix=${prefix}`, 2)).uuids).toEqual([...gpus.keys()].filter((u) => u.startsWith(prefix)).sort());
    expect((await walkGpus('&seen_after=2025-07-18T20:42:37Z', 1000)).uuids).toHaveLength(gpus.size);
    expect((await walkGpus('&seen_after=2025-07-18T20:42:38Z', 1000)).uuids).toEqual([]);
    expect((await walkGpus('&seen_before=2025-07-18T20:42:33Z', 1000)).uuids).toEqual([]);
  });

  it('answers 304 to If-None-Match with the current ETag', async () => {
    const first = await get(api, '/api/v1/gpus?limit=5');
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[\w-]{27}"$/);
    const again = await get(api, '/api/v1/gpus?limit=5', { 'if-none-match': `W/${etag}` });
    expect(again.status).toBe(304);
    expect(again.headers.get('etag')).toBe(etag);
    expect((await get(api, '/api/v1/gpus?limit=6', { 'if-none-match': etag })).status).toBe(200);
    // next_cursor is re-signed every second; the page, and so the tag, stays the same.
    await new Promise((r) => setTimeout(r, 1100));
    const later = await get(api, '/api/v1/gpus?limit=5', { 'if-none-match': etag });
    expect(later.status).toBe(304);
  });

  it('refuses bad parameters and cursors of other filters or routes, naming the parameter', async () => {
    for (const [qs, name] of [['limit=1001', 'limit'], ['limit=0', 'limit'], ['seen_after=yesterday', 'seen_after'], ['uuid_prefix=', 'uuid_prefix'], ['page=2', 'page'], ['cursor=abc', 'cursor']]) {
      const { status, body } = await get(api, `/api/v1/gpus?${qs}`);
      expect(status, qs).toBe(400);
      expect(body.error.details.parameters.map((p: { parameter: string }) => p.parameter)).toContain(name);
    }
    const { body } = await get(api, '/api/v1/gpus?limit=2&hostname=' + fixtureRows()[0].Hostname);
    expect((await get(api, `/api/v1/gpus?limit=2&cursor=${body.next_cursor}`)).status).toBe(400);
    const hosts = await get(api, '/api/v1/hosts?limit=1');
    const crossed = await get(api, `/api/v1/gpus?cursor=${hosts.body.next_cursor}`);
    expect(crossed.status).toBe(400);
    expect(crossed.body.error.message).toMatch(/^cursor /);
  });
});

describe('GET /api/v1/hosts', () => {
  it('pages hosts with GPU counts, models and first/last seen (oracle from the CSV)', async () => {
    const expected = new Map<string, { gpus: Set<string>; models: Set<string>; times: number[] }>();
    for (const r of fixtureRows()) {
      const h = expected.get(r.Hostname) ?? { gpus: new Set(), models: new Set(), times: [] };
      h.gpus.add(r.uuid);
      h.models.add(r.modelName);
      h.times.push(Date.parse(r.timestamp));
      expected.set(r.Hostname, h);
    }
    const seen: unknown[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await get(api, `/api/v1/hosts?limit=7${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.headers.get('etag')).toBeTruthy();
      const page = hostPageSchema.parse(res.body);
      seen.push(...page.hosts);
      cursor = page.next_cursor;
      pages++;
    } while (cursor && pages < 100);
    expect(pages).toBe(Math.ceil(expected.size / 7));
    expect(seen).toEqual(
      [...expected.keys()].sort().map((hostname) => {
        const h = expected.get(hostname)!;
        return {
          hostname,
          gpus: h.gpus.size,
          models: [...h.models].sort(),
          first_seen: new Date(Math.min(...h.times)).toISOString(),
          last_seen: new Date(Math.max(...h.times)).toISOString(),
        };
      }),
    );
  });
});

describe('GET /api/v1/metrics/{metric}/top', () => {
  const oracle = (metric: string, by: 'avg' | 'max' | 'min' | 'last') => {
    const out: { uuid: string; value: number; count: number }[] = [];
    for (const [uuid, rows] of fixtureGpus()) {
      const rs = rows.filter((r) => r.metric_name === metric).sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp));
      const v = rs.map((r) => Number(r.value));
      const value = by === 'avg' ? v.reduce((a, b) => a + b, 0) / v.length : by === 'max' ? Math.max(...v) : by === 'min' ? Math.min(...v) : v.at(-1)!;
      out.push({ uuid, value, count: v.length });
    }
    return out;
  };

  it.each(['avg', 'max', 'min', 'last'] as const)('by=%s: rollup_1h, rollup_1m and raw answers equal the CSV oracle', async (by) => {
    const metric = 'DCGM_FI_DEV_POWER_USAGE';
    const expected = oracle(metric, by)
      .sort((a, b) => b.value - a.value || (a.uuid < b.uuid ? -1 : 1))
      .slice(0, 15);
    const windows = {
      rollup_1h: 'start_time=2025-07-18T20:00:00Z&end_time=2025-07-18T21:00:00Z',
      rollup_1m: 'start_time=2025-07-18T20:42:00Z&end_time=2025-07-18T20:43:00Z',
      raw: 'start_time=2025-07-18T20:42:30Z&end_time=2025-07-18T20:42:40Z',
    };
    for (const [source, w] of Object.entries(windows)) {
      const { status, body } = await get(api, `/api/v1/metrics/${metric}/top?${w}&by=${by}&limit=15`);
      expect(status).toBe(200);
      const top = topSchema.parse(body);
      expect(top.source).toBe(source);
      expect(top.gpus.map((g) => g.uuid)).toEqual(expected.map((e) => e.uuid));
      top.gpus.forEach((g, i) => {
        expect(g.value).toBeCloseTo(expected[i].value, 9);
        expect(g.count).toBe(expected[i].count);
      });
    }
  });

  it('orders ascending, defaults to the last hour of data and validates', async () => {
    const asc = await get(api, '/api/v1/metrics/DCGM_FI_DEV_GPU_TEMP/top?by=min&order=asc&limit=3');
    expect(asc.status).toBe(200);
    expect(asc.body).toMatchObject({ start_time: '2025-07-18T20:00:00.000Z', end_time: '2025-07-18T21:00:00.000Z', source: 'rollup_1h' });
    const mins = oracle('DCGM_FI_DEV_GPU_TEMP', 'min').map((o) => o.value).sort((a, b) => a - b);
    expect(asc.body.gpus.map((g: { value: number }) => g.value)).toEqual(mins.slice(0, 3));
    for (const [qs, name] of [['by=median', 'by'], ['order=up', 'order'], ['limit=1001', 'limit'], ['start_time=2025-07-18T21:00:00Z&end_time=2025-07-18T20:00:00Z', 'start_time']]) {
      const { status, body } = await get(api, `/api/v1/metrics/DCGM_FI_DEV_GPU_TEMP/top?${qs}`);
      expect(status, qs).toBe(400);
      expect(body.error.message).toContain(name);
    }
  });
});

describe('health flags on crafted files', () => {
  const flagged = async (query = '') => {
    const all: { uuid: string; kind: string; detail: Record<string, unknown> }[] = [];
    let cursor: string | null = null;
    do {
      const { status, body } = await get(flagsApi, `/api/v1/anomalies?${WINDOW}&limit=2${query}${cursor ? `&cursor=${cursor}` : ''}`);
      expect(status).toBe(200);
      const page = anomalyPageSchema.parse(body);
      all.push(...page.anomalies);
      cursor = page.next_cursor;
    } while (cursor);
    return all;
  };

  it('fires each flag exactly where the file calls for it', async () => {
    const found = await flagged();
    const s = SCENARIOS;
    expect(found.map((a) => `${a.uuid} ${a.kind}`).sort()).toEqual(
      [
        `${s.thermalHot.uuid} thermal`,
        `${s.xid.uuid} xid`,
        `${s.idleMemory.uuid} idle_allocated`,
        `${s.idlePod.uuid} idle_allocated`,
        `${s.stale.uuid} stale`,
      ].sort(),
    );
    const by = (uuid: string) => found.find((a) => a.uuid === uuid)!.detail;
    expect(by(s.xid.uuid)).toMatchObject({ codes: [48, 79] });
    expect(by(s.thermalHot.uuid)).toMatchObject({ threshold_c: 85, hot_share: 1, max_c: 90, minutes: 30 });
    expect(by(s.idlePod.uuid)).toMatchObject({ pod_attached: true });
    expect(by(s.idleMemory.uuid)).toMatchObject({ pod_attached: false, memory_used_mib: 40_000 });
    expect(by(s.stale.uuid)).toMatchObject({ silent_seconds: 610, factor: 3 });
    expect(by(s.stale.uuid).usual_interval_seconds as number).toBeCloseTo(10, 0);
  });

  it('filters by kind and hostname; thresholds come from the environment', async () => {
    expect((await flagged('&kind=xid')).map((a) => a.uuid)).toEqual([SCENARIOS.xid.uuid]);
    expect((await flagged('&hostname=host-b')).map((a) => a.uuid)).toEqual([SCENARIOS.stale.uuid]);
    const lenient = await startQuery(FLAGS_DB, { THERMAL_MIN_SHARE: '0.1', THERMAL_THRESHOLD_C: '84', IDLE_MEMORY_MIB: '0' });
    const { body } = await get(lenient, `/api/v1/anomalies?${WINDOW}&kind=thermal`);
    expect(body.anomalies.map((a: { uuid: string }) => a.uuid).sort()).toEqual(
      [SCENARIOS.thermalHot.uuid, SCENARIOS.thermalBrief.uuid, SCENARIOS.thermalAtThreshold.uuid].sort(),
    );
    const idle = await get(lenient, `/api/v1/anomalies?${WINDOW}&kind=idle_allocated`);
    expect(idle.body.anomalies).toHaveLength(3); // the driver's 4 MiB now counts as memory in use
    expect((await get(flagsApi, '/api/v1/anomalies?kind=hot')).status).toBe(400);
  });

  it("flags a bucket by its latest version before merges, and filters by the host the inventory names (as /gpus does)", async () => {
    // A GPU moved from host-old to host-new; every minute bucket has two versions in two parts:
    // an early recompute (cool) and the latest (hot).
    const db = 'fleet_versions';
    const admin = clickhouseClient(chConfig, { database: null });
    clients.push(admin);
    await provisionClickHouse(admin, db);
    await admin.command({ query: `SYSTEM STOP MERGES ${db}.rollup_1m` });
    for (const [celsius, version] of [[40, 1], [95, 2]] as const) {
      await admin.command({
        query: `INSERT INTO ${db}.rollup_1m SELECT 'GPU-moved', 'DCGM_FI_DEV_GPU_TEMP',
          toDateTime(${T0 / 1000}, 'UTC') + number * 60, 6, ${celsius}, ${celsius}, ${6 * celsius}, ${celsius}, toDateTime64(${T0 / 1000}, 3, 'UTC') + number * 60 + 50,
          toDateTime64('2026-03-02 00:00:00', 3, 'UTC') + ${version} FROM numbers(30)`,
      });
    }
    const parts = await (await admin.query({ query: `SELECT count() AS n FROM system.parts WHERE database = '${db}' AND table = 'rollup_1m' AND active`, format: 'JSONEachRow' })).json<{ n: string }>();
    expect(Number(parts[0].n)).toBe(2);
    // The inventory, as the samples views write it: the later host last (merged, as /gpus reads it).
    for (const host of ['host-old', 'host-new']) {
      await admin.command({
        query: `INSERT INTO ${db}.gpus (uuid, gpu_id, device, model_name, hostname, first_seen, last_seen, samples, metrics)
          SELECT 'GPU-moved', '0', 'nvidia0', 'NVIDIA H100 80GB HBM3', '${host}', toDateTime64(${T0 / 1000}, 3, 'UTC'),
            toDateTime64(${T0 / 1000}, 3, 'UTC') + 1800, 180, ['DCGM_FI_DEV_GPU_TEMP']`,
      });
    }
    await admin.command({ query: `OPTIMIZE TABLE ${db}.gpus FINAL` });
    const versionsApi = await startQuery(db);
    const thermal = async (host: string) => (await get(versionsApi, `/api/v1/anomalies?${WINDOW}&hostname=${host}`)).body.anomalies;
    expect(await thermal('host-old')).toEqual([]);
    expect(await thermal('host-new')).toEqual([
      expect.objectContaining({
        uuid: 'GPU-moved',
        kind: 'thermal',
        hostname: 'host-new',
        model_name: 'NVIDIA H100 80GB HBM3',
        // Each minute once, at its latest version (without FINAL: 60 minutes, half of them hot).
        detail: expect.objectContaining({ minutes: 30, hot_minutes: 30, hot_share: 1 }),
      }),
    ]);
    expect((await get(versionsApi, '/api/v1/gpus?hostname=host-new')).body.gpus.map((g: { uuid: string }) => g.uuid)).toEqual(['GPU-moved']);
  });

  it('lists flags per GPU in /api/v1/gpus over the last FLAGS_WINDOW_S of data', async () => {
    const { body } = await get(flagsApi, '/api/v1/gpus?limit=1000');
    const flags = Object.fromEntries(body.gpus.map((g: { uuid: string; flags: string[] }) => [g.uuid, g.flags]));
    expect(flags).toEqual({
      [SCENARIOS.thermalHot.uuid]: ['thermal'],
      [SCENARIOS.thermalBrief.uuid]: [],
      [SCENARIOS.thermalAtThreshold.uuid]: [],
      [SCENARIOS.xid.uuid]: ['xid'],
      [SCENARIOS.idleMemory.uuid]: ['idle_allocated'],
      [SCENARIOS.idleDriver.uuid]: [],
      [SCENARIOS.idlePod.uuid]: ['idle_allocated'],
      [SCENARIOS.utilOnce.uuid]: [],
      [SCENARIOS.stale.uuid]: ['stale'],
      [SCENARIOS.healthy.uuid]: [],
    });
    expect(body.gpus.find((g: { uuid: string }) => g.uuid === SCENARIOS.healthy.uuid).samples).toBe(SAMPLES * 4);
  });

  it('flags idle GPUs holding memory in the real DCGM file (oracle from the CSV)', async () => {
    const expected = [...fixtureGpus()]
      .filter(([, rows]) => {
        const of = (m: string) => rows.filter((r) => r.metric_name === m).map((r) => Number(r.value));
        return Math.max(...of('DCGM_FI_DEV_GPU_UTIL')) === 0 && Math.max(...of('DCGM_FI_DEV_FB_USED')) > 64;
      })
      .map(([u]) => u)
      .sort();
    expect(expected.length).toBeGreaterThan(0);
    const { body } = await get(api, '/api/v1/anomalies?kind=idle_allocated&limit=1000');
    expect(body.anomalies.map((a: { uuid: string }) => a.uuid)).toEqual(expected);
    expect(body.next_cursor).toBeNull();
  });
});

describe('GraphQL /graphql', () => {
  const gql = async (base: string, query: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
      body: JSON.stringify({ query }),
    });
    return { status: res.status, body: await res.json() };
  };
  const GPU = 'GPU-5fd4f087-86f3-7a43-b711-4771313afc50';

  it('answers gpus, hosts, top and anomalies exactly as REST does', async () => {
    const host = fixtureRows()[0].Hostname;
    const { status, body } = await gql(api, `{
      gpus(limit: 3, hostname: "${host}") { count next_cursor gpus { uuid gpu_id device model_name hostname first_seen last_seen samples metrics flags } }
      hosts(limit: 2) { next_cursor hosts { hostname gpus models first_seen last_seen } }
      top(metric: "DCGM_FI_DEV_GPU_TEMP", by: "max", limit: 4) { metric by order start_time end_time source gpus { uuid hostname model_name value count } }
      anomalies(kind: "idle_allocated", limit: 5) { start_time end_time next_cursor anomalies { uuid hostname model_name kind detail first_seen last_seen } }
    }`);
    expect(status).toBe(200);
    expect(body.errors).toBeUndefined();
    const rest = async (path: string) => (await get(api, path)).body;
    const restGpus = await rest(`/api/v1/gpus?limit=3&hostname=${host}`);
    expect(body.data.gpus.gpus).toEqual(restGpus.gpus);
    expect(body.data.gpus.count).toBe(3);
    expect(body.data.hosts.hosts).toEqual((await rest('/api/v1/hosts?limit=2')).hosts);
    expect(body.data.top).toEqual(await rest('/api/v1/metrics/DCGM_FI_DEV_GPU_TEMP/top?by=max&limit=4'));
    const restAnomalies = await rest('/api/v1/anomalies?kind=idle_allocated&limit=5');
    expect(body.data.anomalies.anomalies).toEqual(restAnomalies.anomalies);
    // A GraphQL cursor is a REST cursor.
    const next = await get(api, `/api/v1/gpus?limit=3&hostname=${host}&cursor=${body.data.gpus.next_cursor}`);
    expect(next.status).toBe(200);
  });

  it('resolves gpu(uuid) { telemetry, summary, flags } and null for an unknown GPU', async () => {
    const { body } = await gql(api, `{
      gpu(uuid: "${GPU}") { uuid telemetry(limit: 4) { count next_cursor data { timestamp metric_name value labels } } summary(metric: "DCGM_FI_DEV_GPU_TEMP") { metric_name count max last_value } flags { kind } }
      unknown: gpu(uuid: "GPU-none") { uuid }
      metrics { metric_name samples }
    }`);
    expect(body.errors).toBeUndefined();
    const tel = (await get(api, `/api/v1/gpus/${GPU}/telemetry?limit=4`)).body;
    expect(body.data.gpu.telemetry.count).toBe(4);
    expect(body.data.gpu.telemetry.data).toEqual(tel.data.map((d: Record<string, unknown>) => ({ timestamp: d.timestamp, metric_name: d.metric_name, value: d.value, labels: d.labels })));
    const sum = (await get(api, `/api/v1/gpus/${GPU}/summary?metric=DCGM_FI_DEV_GPU_TEMP`)).body.metrics[0];
    expect(body.data.gpu.summary).toEqual([{ metric_name: sum.metric_name, count: sum.count, max: sum.max, last_value: sum.last_value }]);
    const listed = (await get(api, `/api/v1/gpus?uuid_prefix=${GPU}`)).body.gpus[0];
    expect(listed.flags).toEqual(['idle_allocated']); // utilisation 0 with memory in use in the file
    expect(body.data.gpu.flags.map((f: { kind: string }) => f.kind)).toEqual(listed.flags);
    expect(body.data.unknown).toBeNull();
    expect(body.data.metrics).toHaveLength(10);
  });

  it('resolves gpu(uuid) { series } exactly as GET /series (rollup and raw steps)', async () => {
    for (const step of ['1m', '30s']) {
      const { body } = await gql(api, `{ gpu(uuid: "${GPU}") { series(metric: ["DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_GPU_UTIL"], step: "${step}") {
        uuid start_time end_time step step_seconds source series { metric points { t count min max avg last } } } } }`);
      expect(body.errors).toBeUndefined();
      const rest = await get(api, `/api/v1/gpus/${GPU}/series?metric=DCGM_FI_DEV_GPU_TEMP&metric=DCGM_FI_DEV_GPU_UTIL&step=${step}`);
      expect(rest.status).toBe(200);
      expect(body.data.gpu.series).toEqual(rest.body);
      expect(body.data.gpu.series.series.map((s: { points: unknown[] }) => s.points.length)).toEqual([1, 1]);
    }
    const bad = await gql(api, `{ gpu(uuid: "${GPU}") { series(metric: [], step: "7q") { step } } }`);
    expect(bad.body.errors[0].message).toMatch(/^metric .*; step must be a duration/);
  });

  it('validates arguments with the REST rules, naming the argument', async () => {
    const { body } = await gql(api, '{ gpus(limit: 0) { count } }');
    expect(body.errors[0].message).toBe('limit must be an integer from 1 to 1000');
    expect(body.errors[0].extensions).toMatchObject({ code: 'invalid_parameter', status: 400 });
    const top = await gql(api, '{ top(metric: "X", by: "median") { source } }');
    expect(top.body.errors[0].message).toContain('by must be one of');
  });

  it('refuses queries over the depth or cost limit with a 400 before running them', async () => {
    const deep = await gql(api, '{ gpu(uuid: "x") { telemetry { data { labels { a { b { c } } } } } } }');
    expect(deep.status).toBe(400);
    expect(deep.body.errors[0].message).toMatch(/nested 7 levels deep; the limit is 6/);
    const aliases = Array.from({ length: 6 }, (_, i) => `a${i}: gpu(uuid: "${GPU}") { telemetry(limit: 10000) { data { value } } }`).join(' ');
    const costly = await gql(api, `{ ${aliases} }`);
    expect(costly.status).toBe(400);
    expect(costly.body.errors[0].message).toMatch(/the limit is 50000/);
  });

  it('answers a repeated query text alike from its kept document: the same data, errors and refusals each time', async () => {
    const texts = [
      `{ gpus(limit: 2) { count gpus { uuid samples flags } } }`,
      '{ gpus(limit: 0) { count } }', // argument error at execution
      '{ gpus { nope } }', // validation error
      '{ gpus { count ', // syntax error
      '{ gpu(uuid: "x") { telemetry { data { labels { a { b { c } } } } } } }', // too deep
    ];
    const first = await Promise.all(texts.map((t) => gql(api, t)));
    expect(first[0].body.errors).toBeUndefined();
    expect(first.slice(1).map((r) => r.body.errors[0].message)).toEqual([
      'limit must be an integer from 1 to 1000',
      expect.stringContaining('Cannot query field "nope"'),
      expect.stringContaining('Syntax Error'),
      expect.stringContaining('nested 7 levels deep'),
    ]);
    for (let i = 0; i < 2; i++) expect(await Promise.all(texts.map((t) => gql(api, t)))).toEqual(first);
  });

  it('keeps at most DOCUMENT_CACHE_ENTRIES documents, the most recently used, and validates each once', () => {
    const cache = documentCache({ defaultLimit: 1000, maxLimit: 10_000 }, 3);
    const texts = ['{ a }', '{ b }', '{ c }', '{ d }'];
    const docs = texts.map((t) => cache.parse(t));
    expect(cache.size).toBe(3);
    expect(cache.parse('{ b }')).toBe(docs[1]);
    expect(cache.parse('{ a }')).not.toBe(docs[0]); // the oldest went
    expect(cache.parse('{ a }')).toBe(cache.parse('{ a }'));
    expect(() => cache.parse('{ a ')).toThrow(/Syntax Error/);
    const long = `{ ${'f '.repeat(DOCUMENT_CACHE_MAX_CHARS)}}`; // too long to keep
    expect(cache.parse(long) === cache.parse(long)).toBe(false);
    const schema = buildSchema('type Query { a: Int }');
    const doc = cache.parse('{ nope }');
    const errors = cache.validate(schema, doc, specifiedRules);
    expect(errors).toHaveLength(1);
    expect(cache.validate(schema, doc, [...specifiedRules])).toBe(errors);
    expect(cache.validate(schema, doc, [])).toEqual([]); // other rules: validated again
  });

  it('requires the read scope like REST', async () => {
    const secured = await startQuery(FIXTURE_DB, { API_TOKENS: 'reader:read,uploader:upload' });
    expect((await gql(secured, '{ metrics { metric_name } }')).status).toBe(401);
    expect((await gql(secured, '{ metrics { metric_name } }', { authorization: 'Bearer uploader' })).status).toBe(403);
    const ok = await gql(secured, '{ metrics { metric_name } }', { authorization: 'Bearer reader' });
    expect(ok.status).toBe(200);
    expect(ok.body.data.metrics).toHaveLength(10);
  });
});
