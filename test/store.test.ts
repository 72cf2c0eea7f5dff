import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ClickHouseClient } from '@clickhouse/client';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clickhouseClient } from '../shared/clickhouse.ts';
import { parseEnv, type ClickHouseConfig } from '../shared/config.ts';
import { provisionClickHouse, provisionEnv, provisionNats } from '../shared/provision.ts';
import { recomputeRollups, rollupSlices } from '../shared/rollups.ts';
import { runPendingPasses } from './support/rollup-passes.ts';
import { collectEnv } from '../functions/collect/config.ts';
import { createCollectHandler } from '../functions/collect/index.ts';
import { queryEnv } from '../functions/query/config.ts';
import { createQueryHandler } from '../functions/query/index.ts';
import { seriesSchema, uploadDuplicatesSchema } from '../functions/query/schemas.ts';
import { seriesRows, type SeriesSource } from '../functions/query/series.ts';
import { fixtureSamples, sampleBatchEvent } from './support/batch.ts';
import { clickhouseTimestamp, fixtureRows, insertFixture, type FixtureRow } from './support/fixtures.ts';
import { startClickHouse, startNats, type NatsServer, type RunningServer } from './support/servers.ts';

// Sample identity (issue 7 §1), rollups and series (§2), retention (§3), through the real collect
// handler (batches as ingest publishes them, real NATS for its progress bucket) into the real
// ClickHouse engine, read back through the real query handler over HTTP.
// Storing the same samples again (same file twice, overlapping files, repeated rows, a later
// upload with other values) must leave every answer equal to the single-upload one.

let nats: NatsServer;
let clickhouse: RunningServer;
let nc: NatsConnection;
let chConfig: ClickHouseConfig;
const clients: ClickHouseClient[] = [];
const servers: Server[] = [];

interface Db {
  ch: ClickHouseClient;
  api: string;
  /** Stores rows as upload `upload` (batches of 500 rows, as ingest publishes them). */
  upload(upload: string, rows: FixtureRow[], receivedAt: number): Promise<void>;
}

async function database(name: string, collectVars: Record<string, string> = {}): Promise<Db> {
  const admin = clickhouseClient(chConfig, { database: null });
  clients.push(admin);
  await provisionClickHouse(admin, name);
  const env = { CLICKHOUSE_URL: chConfig.CLICKHOUSE_URL, CLICKHOUSE_DATABASE: name, NATS_URL: nats.url };
  const ch = clickhouseClient({ ...chConfig, CLICKHOUSE_DATABASE: name });
  clients.push(ch);
  const collect = createCollectHandler(parseEnv(collectEnv, { ...env, COLLECT_MAX_ROWS: '2000', ...collectVars }), ch, async () => nc);
  const handler = createQueryHandler(parseEnv(queryEnv, env), { clickhouse: () => ch, nats: async () => nc });
  const server = createServer((req, res) => void handler(req, res));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    ch,
    api,
    async upload(upload, rows, receivedAt) {
      const samples = fixtureSamples(rows);
      const events = [];
      for (let seq = 0; seq * 500 < samples.length; seq++) {
        events.push(await sampleBatchEvent({ uploadId: upload, seq, samples: samples.slice(seq * 500, seq * 500 + 500), receivedAt }));
      }
      // Fetches of up to 8 batches, as the worker hands them over, then their rollup passes.
      for (let i = 0; i < events.length; i += 8) expect((await collect(events.slice(i, i + 8))).poison ?? []).toEqual([]);
      expect(await runPendingPasses(nc, collect)).toBeGreaterThan(0);
    },
  };
}

async function get(db: Db, path: string) {
  const res = await fetch(db.api + path);
  return { status: res.status, body: await res.json() };
}

async function ok(db: Db, path: string) {
  const { status, body } = await get(db, path);
  expect(status, `${path}: ${JSON.stringify(body)}`).toBe(200);
  return body;
}

/** Every telemetry row of a GPU, walking the cursor 7 rows at a time. */
async function telemetry(db: Db, uuid: string): Promise<unknown[]> {
  const out: unknown[] = [];
  let cursor: string | null = null;
  do {
    const body = await ok(db, `/api/v1/gpus/${uuid}/telemetry?limit=7${cursor ? `&cursor=${cursor}` : ''}`);
    out.push(...body.data);
    cursor = body.next_cursor;
  } while (cursor);
  return out;
}

const FIXTURE = fixtureRows();
const GPUS = [...new Set(FIXTURE.map((r) => r.uuid))].sort();
const METRICS = [...new Set(FIXTURE.map((r) => r.metric_name))].sort();
const CHECKED_GPUS = [GPUS[0], GPUS[100], GPUS[246]];

/** Every endpoint's answer for the fixture's data (a few GPUs for the per-GPU routes). */
async function answers(db: Db) {
  const perGpu = [];
  for (const uuid of CHECKED_GPUS) {
    const metrics = METRICS.slice(0, 4).map((m) => `metric=${m}`).join('&') + '&start_time=2025-07-18T20:40:00Z&end_time=2025-07-18T20:45:00Z';
    perGpu.push({
      telemetry: await telemetry(db, uuid),
      summary: await ok(db, `/api/v1/gpus/${uuid}/summary`),
      seriesRaw: await ok(db, `/api/v1/gpus/${uuid}/series?${metrics}&step=2s`),
      seriesRollup: await ok(db, `/api/v1/gpus/${uuid}/series?${metrics}&step=1m`),
    });
  }
  return { gpus: await ok(db, '/api/v1/gpus?limit=1000'), metrics: await ok(db, '/api/v1/metrics'), perGpu };
}

// Received an hour ago: raw retention (30 days) runs on received_at.
const T0 = Date.now() - 3600_000;
const later = (rows: FixtureRow[], f: (r: FixtureRow) => Partial<FixtureRow>) => rows.map((r) => ({ ...r, ...f(r) }));

beforeAll(async () => {
  [nats, clickhouse] = await Promise.all([startNats(), startClickHouse()]);
  chConfig = { CLICKHOUSE_URL: clickhouse.url, CLICKHOUSE_USER: 'default', CLICKHOUSE_PASSWORD: '', CLICKHOUSE_DATABASE: 'default' };
  nc = await connect({ servers: nats.url });
  await provisionNats(nc, parseEnv(provisionEnv, {}));
}, 60_000);

afterAll(async () => {
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  await Promise.allSettled(clients.map((c) => c.close()));
  await nc?.close();
  await Promise.allSettled([nats?.stop(), clickhouse?.stop()]);
});

describe('a sample stored again changes no answer', () => {
  let single: Awaited<ReturnType<typeof answers>>;

  beforeAll(async () => {
    const db = await database('once');
    await db.upload('once-1', FIXTURE, T0);
    single = await answers(db);
  }, 120_000);

  it('the single upload answers as the fixture says (10 samples per GPU, 10 per telemetry walk)', () => {
    expect(single.gpus.gpus).toHaveLength(247);
    for (const g of single.gpus.gpus) expect(g.samples).toBe(10);
    expect(single.metrics.metrics.map((m: { samples: number; gpus: number }) => [m.samples, m.gpus])).toEqual(METRICS.map(() => [247, 247]));
    for (const g of single.perGpu) {
      expect(g.telemetry).toHaveLength(10);
      expect(g.seriesRollup.source).toBe('rollup_1m');
      expect(g.seriesRaw.source).toBe('raw');
    }
  });

  it('the same file uploaded twice', async () => {
    const db = await database('twice');
    await db.upload('twice-1', FIXTURE, T0);
    await db.upload('twice-2', FIXTURE, T0 + 60_000);
    expect(await answers(db)).toEqual(single);
    const dup = uploadDuplicatesSchema.parse(await ok(db, '/api/v1/uploads/twice-2/duplicates'));
    expect(dup).toEqual({ upload_id: 'twice-2', rows_stored: 2470, already_present: 2470, superseded: 0 });
    expect(await ok(db, '/api/v1/uploads/twice-1/duplicates')).toEqual({ upload_id: 'twice-1', rows_stored: 2470, already_present: 0, superseded: 2470 });
    expect((await get(db, '/api/v1/uploads/never-uploaded/duplicates')).status).toBe(404);
    expect((await get(db, '/api/v1/uploads/bad%20id/duplicates')).status).toBe(400);
  });

  it('overlapping files', async () => {
    const db = await database('overlap');
    await db.upload('overlap-1', FIXTURE.slice(0, 1600), T0);
    await db.upload('overlap-2', FIXTURE.slice(900), T0 + 60_000);
    expect(await answers(db)).toEqual(single);
    expect(await ok(db, '/api/v1/uploads/overlap-2/duplicates')).toMatchObject({ rows_stored: 2470 - 900, already_present: 700 });
  });

  it('a file with repeated rows', async () => {
    const db = await database('repeated');
    const extra = FIXTURE.filter((_, i) => i % 3 === 0).map((r, i) => ({ ...r, line: 3000 + i }));
    await db.upload('repeated-1', [...FIXTURE, ...extra], T0);
    expect(await answers(db)).toEqual(single);
    expect(await ok(db, '/api/v1/uploads/repeated-1/duplicates')).toMatchObject({ rows_stored: 2470 + extra.length, already_present: extra.length });
  });

  it('a batch redelivered after a crash between its insert and the rollup recompute', async () => {
    const db = await database('crash');
    // Stored as collect stores it (same batch ids), but the process died before the recompute.
    const admin = clickhouseClient(chConfig, { database: null });
    clients.push(admin);
    await insertFixture(admin, 'crash', { uploadId: 'crash-1', batchRows: 500, receivedAt: clickhouseTimestamp(new Date(T0).toISOString()) });
    expect((await ok(db, '/api/v1/gpus')).gpus[0].samples).toBe(0);
    // The redelivery finds every batch in the ledger (nothing inserted again) and recomputes.
    await db.upload('crash-1', FIXTURE, T0);
    expect(await answers(db)).toEqual(single);
    expect(await ok(db, '/api/v1/uploads/crash-1/duplicates')).toMatchObject({ rows_stored: 2470, already_present: 0 });
  });

  it('samples stored before the rollups existed (an upgrade) get them at the next provisioning', async () => {
    const db = await database('upgrade');
    await db.upload('upgrade-1', later(FIXTURE, (r) => ({ value: String(Number(r.value) + 1000) })), T0);
    await db.upload('upgrade-2', FIXTURE, T0 + 60_000);
    // As an install from before the rollups: samples, no rollups, no record of a backfill.
    for (const table of ['rollup_1m', 'rollup_1h', 'rollup_1d', 'rollup_backfills']) await db.ch.command({ query: `TRUNCATE TABLE ${table}` });
    expect((await ok(db, '/api/v1/gpus')).gpus[0].samples).toBe(0);
    const admin = clickhouseClient(chConfig, { database: null });
    clients.push(admin);
    await provisionClickHouse(admin, 'upgrade');
    expect(await answers(db)).toEqual(single);
    // Recorded: the next provisioning does not read every sample again.
    const backfills = async () => (await (await db.ch.query({ query: 'SELECT samples FROM rollup_backfills', format: 'JSONEachRow' })).json<{ samples: number }>()).map((r) => Number(r.samples));
    expect(await backfills()).toEqual([2 * 2470]);
    await provisionClickHouse(admin, 'upgrade');
    expect(await backfills()).toEqual([2 * 2470]);
  });

  it('rollup tables from before partitioning move to the partitioned layout at provisioning, an insert in flight kept', async () => {
    const db = await database('layout');
    await db.upload('layout-1', FIXTURE, T0);
    const admin = clickhouseClient(chConfig, { database: null });
    clients.push(admin);
    const q = async <T,>(query: string) => (await (await admin.query({ query, format: 'JSONEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } })).json<T>());
    // As an install from before: the rollup tables of that release (no PARTITION BY, hostname and
    // model in every row), same rows.
    const OLD_COLUMNS = `(uuid LowCardinality(String), metric_name LowCardinality(String),
          hostname LowCardinality(String), model_name LowCardinality(String), t DateTime('UTC'), count UInt64, min Float64,
          max Float64, sum Float64, last Float64, last_ts DateTime64(3, 'UTC'), updated_at DateTime64(3, 'UTC'))`;
    for (const table of ['rollup_1m', 'rollup_1h', 'rollup_1d']) {
      await admin.command({
        query: `CREATE TABLE layout.${table}_old ${OLD_COLUMNS}
          ENGINE = ReplacingMergeTree(updated_at) ORDER BY (uuid, metric_name, t) TTL toDateTime(updated_at) + toIntervalDay(395)`,
      });
      await admin.command({
        query: `INSERT INTO layout.${table}_old SELECT uuid, metric_name, 'h', 'm', * EXCEPT (uuid, metric_name) FROM layout.${table}`,
      });
      await admin.command({ query: `EXCHANGE TABLES layout.${table} AND layout.${table}_old` });
      await admin.command({ query: `DROP TABLE layout.${table}_old SYNC` });
    }
    const keys = async () => q<{ name: string; partition_key: string }>(`SELECT name, partition_key FROM system.tables WHERE database = 'layout' AND name LIKE 'rollup_1%' ORDER BY name`);
    expect(await keys()).toEqual([{ name: 'rollup_1d', partition_key: '' }, { name: 'rollup_1h', partition_key: '' }, { name: 'rollup_1m', partition_key: '' }]);
    // A recompute still writing the old rollup_1m when provisioning starts (30 rows, 0.1 s each).
    const inflight = admin.command({
      query: `INSERT INTO layout.rollup_1m SELECT 'GPU-inflight', 'DCGM_FI_DEV_GPU_TEMP', 'h', 'm', toDateTime('2025-07-18 20:00:00', 'UTC') + number * 60,
        1, 40, 40, 40, 40, now64(3), now64(3) FROM numbers(30) WHERE sleepEachRow(0.1) = 0`,
      clickhouse_settings: { max_block_size: '1' },
    });
    await new Promise((r) => setTimeout(r, 300));
    await provisionClickHouse(admin, 'layout');
    await inflight;
    expect(await keys()).toEqual([
      { name: 'rollup_1d', partition_key: 'toYYYYMM(t)' },
      { name: 'rollup_1h', partition_key: 'toMonday(t)' },
      { name: 'rollup_1m', partition_key: 'toDate(t)' },
    ]);
    expect(await q(`SELECT name FROM system.tables WHERE database = 'layout' AND name LIKE '%relayout%'`)).toEqual([]);
    expect(await answers(db)).toEqual(single);
    expect(await q(`SELECT count() AS n FROM layout.rollup_1m FINAL WHERE uuid = 'GPU-inflight'`)).toEqual([{ n: 30 }]);
    // The identity columns the rollups no longer carry are gone.
    expect(await q(`SELECT count() AS n FROM system.columns WHERE database = 'layout' AND table LIKE 'rollup_1%' AND name IN ('hostname', 'model_name')`)).toEqual([{ n: 0 }]);
    // The retention TTL is on the new tables too.
    for (const [{ q: ddl }] of await Promise.all(['rollup_1m', 'rollup_1h', 'rollup_1d'].map((t) => q<{ q: string }>(`SELECT create_table_query AS q FROM system.tables WHERE database = 'layout' AND name = '${t}'`)))) {
      expect(ddl).toContain('TTL toDateTime(updated_at) + toIntervalDay(395)');
    }

    // A move killed after its EXCHANGE left the old table (an older release's, with a row not yet
    // copied back): the next provisioning finishes it.
    await admin.command({ query: `CREATE TABLE layout.rollup_1h_relayout ${OLD_COLUMNS} ENGINE = ReplacingMergeTree(updated_at) ORDER BY (uuid, metric_name, t)` });
    await admin.command({
      query: `INSERT INTO layout.rollup_1h_relayout SELECT 'GPU-leftover', 'DCGM_FI_DEV_GPU_TEMP', 'h', 'm', toDateTime('2025-07-18 20:00:00', 'UTC'), 1, 1, 1, 1, 1, now64(3), now64(3)`,
    });
    await provisionClickHouse(admin, 'layout');
    expect(await q(`SELECT count() AS n FROM layout.rollup_1h FINAL WHERE uuid = 'GPU-leftover'`)).toEqual([{ n: 1 }]);
    expect(await q(`SELECT name FROM system.tables WHERE database = 'layout' AND name LIKE '%relayout%'`)).toEqual([]);
    expect(await answers(db)).toEqual(single);
  });

  it('a later upload with different values wins', async () => {
    const db = await database('changed');
    // First an upload where every value is wrong, then the right one, received later.
    await db.upload('changed-1', later(FIXTURE, (r) => ({ value: String(Number(r.value) + 1000) })), T0);
    await db.upload('changed-2', FIXTURE, T0 + 60_000);
    expect(await answers(db)).toEqual(single);
    // Received earlier but uploaded last: still loses (the clock is received_at).
    await db.upload('changed-0', later(FIXTURE.slice(0, 500), (r) => ({ value: String(Number(r.value) + 7) })), T0 - 60_000);
    expect(await answers(db)).toEqual(single);
  });
});

// A crafted series: 2 GPUs × 2 metrics, one sample every 7 s for 50 h across two UTC midnights,
// integer values (sums exact in Float64), then a later upload replacing every fifth sample.
const SERIES_START = Date.UTC(2025, 6, 17, 22, 0, 3);
const SERIES_END = SERIES_START + 50 * 3600_000;
const SERIES_GPUS = [FIXTURE[0], FIXTURE[1]];
const SERIES_METRICS = ['DCGM_FI_DEV_GPU_TEMP', 'DCGM_FI_DEV_GPU_UTIL'];

function craftedRows(replace: boolean): FixtureRow[] {
  const rows: FixtureRow[] = [];
  let line = 2;
  for (const base of SERIES_GPUS) {
    for (const metric of SERIES_METRICS) {
      for (let ts = SERIES_START, i = 0; ts <= SERIES_END; ts += 7000, i++) {
        if (replace && i % 5 !== 0) continue;
        const value = replace ? 500 + (i % 13) : (i * 7919 + metric.length * 31 + base.gpu_id.length) % 101;
        rows.push({ ...base, metric_name: metric, timestamp: new Date(ts).toISOString(), value: String(value), line: line++ });
      }
    }
  }
  return rows;
}

/** The oracle: buckets computed here from the rows, the later upload's value winning. */
function oracle(rows: FixtureRow[][], uuid: string, metric: string, step: number, start: number, end: number) {
  const latest = new Map<number, number>();
  for (const upload of rows) for (const r of upload) if (r.uuid === uuid && r.metric_name === metric) latest.set(Date.parse(r.timestamp), Number(r.value));
  const stepMs = step * 1000;
  const lo = Math.floor(start / stepMs) * stepMs;
  const hi = (Math.floor(end / stepMs) + 1) * stepMs;
  const buckets = new Map<number, { ts: number; v: number }[]>();
  for (const [ts, v] of [...latest].sort((a, b) => a[0] - b[0])) {
    if (ts < lo || ts >= hi) continue;
    const b = Math.floor(ts / stepMs) * stepMs;
    if (!buckets.has(b)) buckets.set(b, []);
    buckets.get(b)!.push({ ts, v });
  }
  return [...buckets].map(([b, xs]) => ({
    t: new Date(b).toISOString(),
    count: xs.length,
    min: Math.min(...xs.map((x) => x.v)),
    max: Math.max(...xs.map((x) => x.v)),
    avg: xs.reduce((s, x) => s + x.v, 0) / xs.length,
    last: xs.at(-1)!.v,
  }));
}

describe('series from rollups and raw samples', () => {
  let db: Db;
  const uploads = [craftedRows(false), craftedRows(true)];

  beforeAll(async () => {
    // Passes recomputed in slices of a few GPUs (shared/rollups.ts), as large passes are: every
    // answer below must be the same as from one statement per level.
    db = await database('series', { COLLECT_ROLLUP_KEYS_PER_STATEMENT: '3' });
    await db.upload('series-1', uploads[0], T0);
    await db.upload('series-2', uploads[1], T0 + 60_000);
  }, 180_000);

  const cases: { step: string; seconds: number; source: SeriesSource; start: number; end: number }[] = [
    { step: '1m', seconds: 60, source: 'rollup_1m', start: SERIES_START + 3600_000, end: SERIES_START + 9 * 3600_000 },
    { step: '5m', seconds: 300, source: 'rollup_1m', start: SERIES_START + 3600_000 + 17_000, end: SERIES_START + 20 * 3600_000 },
    { step: '1h', seconds: 3600, source: 'rollup_1h', start: SERIES_START, end: SERIES_END },
    { step: '2h', seconds: 7200, source: 'rollup_1h', start: SERIES_START - 86_400_000, end: SERIES_END },
    { step: '1d', seconds: 86_400, source: 'rollup_1d', start: SERIES_START, end: SERIES_END },
    { step: '30s', seconds: 30, source: 'raw', start: SERIES_START, end: SERIES_START + 2 * 3600_000 },
    { step: '90s', seconds: 90, source: 'raw', start: SERIES_START + 10 * 3600_000, end: SERIES_START + 30 * 3600_000 },
  ];

  for (const c of cases) {
    it(`step=${c.step} is served from ${c.source} and equals the oracle computed from the CSV rows`, async () => {
      const uuid = SERIES_GPUS[1].uuid;
      const qs = `metric=${SERIES_METRICS[0]}&metric=${SERIES_METRICS[1]}&step=${c.step}&start_time=${new Date(c.start).toISOString()}&end_time=${new Date(c.end).toISOString()}`;
      const body = seriesSchema.parse(await ok(db, `/api/v1/gpus/${uuid}/series?${qs}`));
      expect(body).toMatchObject({ uuid, step: c.step, step_seconds: c.seconds, source: c.source });
      expect(body.series.map((s) => s.metric)).toEqual(SERIES_METRICS);
      for (const s of body.series) {
        const expected = oracle(uploads, uuid, s.metric, c.seconds, c.start, c.end);
        expect(expected.length).toBeGreaterThan(1);
        expect(s.points).toEqual(expected);
      }
    });
  }

  it('a recompute in slices of GPUs, several at once, writes the same buckets as one statement per level', async () => {
    const read = async () => {
      const out: unknown[] = [];
      for (const table of ['rollup_1m', 'rollup_1h', 'rollup_1d']) {
        const rs = await db.ch.query({ query: `SELECT * EXCEPT updated_at FROM ${table} FINAL ORDER BY uuid, metric_name, t`, format: 'JSONEachRow' });
        out.push(await rs.json());
      }
      return out;
    };
    const ids = (await (await db.ch.query({ query: 'SELECT DISTINCT batch_id FROM collected_batches ORDER BY batch_id', format: 'JSONEachRow' })).json<{ batch_id: string }>()).map((r) => r.batch_id);
    expect((await rollupSlices(db.ch, ids, 3)).length).toBeGreaterThan(1);
    // A pass small enough for one statement is still split for concurrency, unless that leaves
    // slices under the minimum size.
    expect(await rollupSlices(db.ch, ids, 1_000_000, 2, 1)).toHaveLength(2);
    expect(await rollupSlices(db.ch, ids, 1_000_000, 2, 1_000_000)).toHaveLength(1);
    // A pass whose stored rows already bound it to one slice needs no query: the whole uuid range.
    const stored = Number((await (await db.ch.query({ query: 'SELECT sum(rows) AS n FROM collected_batches FINAL', format: 'JSONEachRow' })).json<{ n: string }>())[0].n);
    expect(await rollupSlices(db.ch, ids, 1_000_000, 2, stored, stored)).toEqual([{ lo: '', hi: '' }]);
    expect((await rollupSlices(db.ch, ids, 3, 2, 4096, stored)).length).toBeGreaterThan(1);
    const sliced = await read();
    expect((sliced as unknown[][]).every((rows) => rows.length > 0)).toBe(true);
    await recomputeRollups(db.ch, ids, 1_000_000);
    expect(await read()).toEqual(sliced);
    // Slices recomputed four at once (collect runs COLLECT_ROLLUP_SLICE_CONCURRENCY of them).
    await recomputeRollups(db.ch, ids, 3, 4);
    expect(await read()).toEqual(sliced);
    // One statement per level over the whole uuid range, from the stored-rows bound, rebuilding
    // every bucket from nothing.
    for (const table of ['rollup_1m', 'rollup_1h', 'rollup_1d']) await db.ch.command({ query: `TRUNCATE TABLE ${table}` });
    expect((await read()).flat()).toEqual([]);
    await recomputeRollups(db.ch, ids, 1_000_000, 2, stored);
    expect(await read()).toEqual(sliced);
  });

  it('rollup-served and raw-served buckets are equal for every rollup level', async () => {
    for (const [step, source] of [[60, 'rollup_1m'], [3600, 'rollup_1h'], [86_400, 'rollup_1d']] as const) {
      const r = { uuid: SERIES_GPUS[0].uuid, metrics: SERIES_METRICS, start: SERIES_START, end: SERIES_END, step };
      const fromRollup = await seriesRows(db.ch, { ...r, source });
      const fromRaw = await seriesRows(db.ch, { ...r, source: 'raw' });
      expect(fromRollup.length).toBeGreaterThan(2);
      expect(fromRollup).toEqual(fromRaw);
    }
  });

  it('chooses the step from max_points and defaults the window to the last 24 h of the GPU', async () => {
    const uuid = SERIES_GPUS[0].uuid;
    const body = await ok(db, `/api/v1/gpus/${uuid}/series?metric=${SERIES_METRICS[0]}&max_points=100`);
    const last = Math.floor((SERIES_END - SERIES_START) / 7000) * 7000 + SERIES_START;
    expect(body).toMatchObject({ end_time: new Date(last).toISOString(), start_time: new Date(last - 86_400_000).toISOString(), step: '15m', source: 'rollup_1m' });
    expect(body.series[0].points.length).toBeLessThanOrEqual(100);
    expect(body.series[0].points).toEqual(oracle(uploads, uuid, SERIES_METRICS[0], 900, last - 86_400_000, last));
    const dflt = await ok(db, `/api/v1/gpus/${uuid}/series?metric=${SERIES_METRICS[0]}`);
    expect(dflt).toMatchObject({ step: '2m', step_seconds: 120 });
  });

  it('rejects bad parameters with 400 naming them, and an unknown GPU with 404', async () => {
    const uuid = SERIES_GPUS[0].uuid;
    const bad = async (qs: string, parameter: string) => {
      const { status, body } = await get(db, `/api/v1/gpus/${uuid}/series?${qs}`);
      expect(status, qs).toBe(400);
      expect(body.error.details.parameters.map((p: { parameter: string }) => p.parameter), qs).toContain(parameter);
    };
    await bad('step=1m', 'metric');
    await bad(`${Array.from({ length: 11 }, (_, i) => `metric=m${i}`).join('&')}`, 'metric');
    await bad('metric=a&step=0s', 'step');
    await bad('metric=a&step=1w', 'step');
    await bad('metric=a&max_points=10001', 'max_points');
    await bad('metric=a&step=1m&max_points=10', 'max_points');
    await bad('metric=a&step=1s&start_time=2025-07-17T00:00:00Z&end_time=2025-07-18T00:00:00Z', 'step');
    await bad('metric=a&start_time=2025-07-19T00:00:00Z&end_time=2025-07-18T00:00:00Z', 'start_time');
    await bad('metric=a&start_time=yesterday', 'start_time');
    await bad('metric=a&bogus=1', 'bogus');
    expect((await get(db, '/api/v1/gpus/GPU-00000000-0000-0000-0000-000000000000/series?metric=a')).status).toBe(404);
  });
});

describe('retention', () => {
  it('raw samples past RAW_RETENTION_DAYS disappear while their rollups remain; re-provisioning updates the TTL', async () => {
    const db = await database('retention');
    const admin = clickhouseClient(chConfig, { database: null });
    clients.push(admin);
    await provisionClickHouse(admin, 'retention', { rawDays: 100, rollupDays: 395 });
    const uuid = FIXTURE[0].uuid;
    // Received 40 days ago: kept with 100 days, past retention with 30.
    await db.upload('old', FIXTURE, Date.now() - 40 * 86_400_000);
    const count = async (sql: string) => Number(((await (await db.ch.query({ query: sql, format: 'JSONEachRow' })).json()) as { n: string }[])[0].n);
    expect(await count('SELECT count() AS n FROM samples')).toBe(2470);
    const series = await ok(db, `/api/v1/gpus/${uuid}/series?metric=${FIXTURE[0].metric_name}&step=1m`);
    expect(series.series[0].points).toEqual([expect.objectContaining({ count: 1, last: Number(FIXTURE[0].value) })]);

    await provisionClickHouse(admin, 'retention', { rawDays: 30, rollupDays: 395 });
    await db.ch.command({ query: 'OPTIMIZE TABLE samples FINAL' });
    expect(await count('SELECT count() AS n FROM samples')).toBe(0);
    expect((await ok(db, `/api/v1/gpus/${uuid}/telemetry`)).data).toEqual([]);
    expect(await ok(db, `/api/v1/gpus/${uuid}/series?metric=${FIXTURE[0].metric_name}&step=1m`)).toEqual(series);
    expect(await count('SELECT sum(count) AS n FROM rollup_1d FINAL')).toBe(2470);
    expect((await ok(db, '/api/v1/gpus?limit=1000')).gpus.find((g: { uuid: string }) => g.uuid === uuid).samples).toBe(10);
  });
});
