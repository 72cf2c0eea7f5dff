import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CloudEvent } from 'cloudevents';
import { connect, type NatsConnection } from 'nats';
import type { ClickHouseClient } from '@clickhouse/client';
import { clickhouseClient } from '../shared/clickhouse.ts';
import { clickhouseEnv, parseEnv, workerEnv } from '../shared/config.ts';
import { NATS, toNatsHeaders } from '../shared/cloudevents-nats.ts';
import { registry } from '../shared/metrics.ts';
import { migrations } from '../shared/migrations.ts';
import { BATCH_CONTENT_TYPE, GZIP_BATCH_CONTENT_TYPE, SampleBatchEncoder } from '../shared/sample-batch.ts';
import { BUCKETS, CONSUMERS, EVENT_TYPES, STREAMS, SUBJECTS } from '../shared/names.ts';
import { provisionClickHouse, provisionEnv, provisionNats } from '../shared/provision.ts';
import { startPullWorker } from '../shared/worker.ts';
import { createCollectHandler } from '../functions/collect/index.ts';
import { collectEnv } from '../functions/collect/config.ts';
import { labelsRaw } from '../functions/remote-write/labels.ts';
import { fixtureRows, fixtureTsv } from './support/fixtures.ts';
import { fixtureSamples, sampleBatchEvent } from './support/batch.ts';
import { waitFor } from './support/ports.ts';
import { runPendingPasses } from './support/rollup-passes.ts';
import { startClickHouse, startNats, type NatsServer, type RunningServer } from './support/servers.ts';

// Redelivery must never duplicate rows: the same batch delivered twice, in the same or in a
// different group, or republished as a new message, is stored exactly once.

let nats: NatsServer;
let clickhouse: RunningServer;
let nc: NatsConnection;
let ch: ClickHouseClient;
let collect: ReturnType<typeof createCollectHandler>;

const UPLOAD = '00000000-0000-4000-8000-00000000c011';
const samples = fixtureSamples();

/** A samples CloudEvent holding fixture rows [from, to) as batch `<upload>.0.<seq>`, as ingest publishes it. */
function batchEvent(seq: number, from: number, to: number, upload = UPLOAD, alter?: (block: Buffer) => Buffer) {
  return sampleBatchEvent({ uploadId: upload, seq, samples: samples.slice(from, to), alter });
}
const batchEvents = (...specs: Parameters<typeof batchEvent>[]) => Promise.all(specs.map((s) => batchEvent(...s)));

async function stored(): Promise<{ rows: number; distinct: number }> {
  const rs = await ch.query({
    query: 'SELECT count() AS rows, uniqExact(uuid, metric_name, timestamp) AS distinct FROM samples WHERE upload_id = {u:String}',
    query_params: { u: UPLOAD },
    format: 'JSONEachRow',
  });
  const [r] = (await rs.json()) as { rows: string; distinct: string }[];
  return { rows: Number(r.rows), distinct: Number(r.distinct) };
}

beforeAll(async () => {
  [nats, clickhouse] = await Promise.all([startNats(), startClickHouse()]);
  const env = { NATS_URL: nats.url, CLICKHOUSE_URL: clickhouse.url, CLICKHOUSE_DATABASE: 'telemetry' };
  nc = await connect({ servers: nats.url });
  await provisionNats(nc, parseEnv(provisionEnv, {}));
  const admin = clickhouseClient(parseEnv(clickhouseEnv, env), { database: null });
  await provisionClickHouse(admin, 'telemetry');
  await admin.close();
  const cfg = parseEnv(collectEnv, { ...env, COLLECT_MAX_ROWS: '600' });
  ch = clickhouseClient(cfg);
  collect = createCollectHandler(cfg, ch, async () => nc);
});

afterAll(async () => {
  await ch?.close();
  await nc?.close();
  await Promise.all([nats?.stop(), clickhouse?.stop()]);
});

describe('collect idempotence (real ClickHouse)', () => {
  it('stores a batch delivered twice in the same group once', async () => {
    const group = await batchEvents([0, 0, 300], [1, 300, 600]);
    await collect(group);
    await collect(group);
    expect(await stored()).toEqual({ rows: 600, distinct: 600 });
  });

  it('stores batches redelivered in a different grouping once', async () => {
    await collect(await batchEvents([2, 600, 900]));
    await collect(await batchEvents([3, 900, 1200], [2, 600, 900]));
    await collect(await batchEvents([4, 1200, 1500], [3, 900, 1200], [5, 1500, 1700]));
    expect(await stored()).toEqual({ rows: 1700, distinct: 1700 });
  });

  it('records progress for every batch, including skipped redeliveries', async () => {
    // Progress is put by the rollup passes the groups above queued.
    expect(await runPendingPasses(nc, collect)).toBeGreaterThan(0);
    const kv = await nc.jetstream().views.kv(BUCKETS.progress);
    expect(Number((await kv.get(`${UPLOAD}.0.3`))!.string())).toBe(300);
    expect(Number((await kv.get(`${UPLOAD}.0.5`))!.string())).toBe(200);
  });

  it('stores a fetch larger than COLLECT_MAX_ROWS completely (several inserts)', async () => {
    await collect(await batchEvents([6, 1700, 1900], [7, 1900, 2100], [8, 2100, 2470]));
    expect(await stored()).toEqual({ rows: fixtureRows().length, distinct: fixtureRows().length });
  });

  it('stores a 40 MB group as a single part (atomic), so the batch ledger is exact', async () => {
    const big = '00000000-0000-4000-8000-00000000b16b';
    const insertAll = createCollectHandler(parseEnv(collectEnv, { CLICKHOUSE_URL: clickhouse.url, COLLECT_MAX_ROWS: '1000000' }), ch, async () => nc);
    const group = await Promise.all(Array.from({ length: 40 }, (_, i) => batchEvent(i, 0, 2470, big)));
    await insertAll(group);
    const rs = await ch.query({
      query: 'SELECT count() AS rows, uniqExact(_part) AS parts FROM samples WHERE upload_id = {u:String}',
      query_params: { u: big },
      format: 'JSONEachRow',
    });
    expect((await rs.json())[0]).toEqual({ rows: 40 * 2470, parts: 1 });
  });

  it('still stores gzip Native batches written before zstd, beside zstd ones in the same fetch (rolling upgrade)', async () => {
    const legacy = '00000000-0000-4000-8000-0000000001d1';
    const zstdEvent = await batchEvent(0, 0, 40, legacy);
    const gzipEvent = await batchEvent(1, 40, 100, legacy);
    const encoder = new SampleBatchEncoder(legacy, gzipEvent.id, Date.now(), 60);
    for (const { sample, line } of samples.slice(40, 100)) encoder.add(sample, sample.timestamp, line);
    const gzipped = new CloudEvent({ ...gzipEvent, datacontenttype: GZIP_BATCH_CONTENT_TYPE, data: gzipSync(encoder.finish()) });
    expect(zstdEvent.datacontenttype).toBe(BATCH_CONTENT_TYPE);
    expect((await collect([zstdEvent, gzipped])).poison ?? []).toEqual([]);
    const rs = await ch.query({ query: 'SELECT count() AS n, uniqExact(line) AS lines FROM samples WHERE upload_id = {u:String}', query_params: { u: legacy }, format: 'JSONEachRow' });
    expect(await rs.json()).toEqual([{ n: 100, lines: 100 }]);
  });

  it('dead-letters a batch whose body is not in the encoding its content type names', async () => {
    const upload = '00000000-0000-4000-8000-0000000001d2';
    const event = await batchEvent(0, 0, 10, upload);
    const outcome = await collect([new CloudEvent({ ...event, data: gzipSync(Buffer.from('not zstd')) })]);
    expect(outcome.poison?.map((p) => p.reason)).toEqual(['sample batch is not zstd-compressed']);
  });

  it('still stores a TabSeparated batch written before the Native format (rolling upgrade)', async () => {
    const legacy = '00000000-0000-4000-8000-0000000001d0';
    const body = fixtureTsv({ uploadId: legacy, batchRows: 10_000, rows: fixtureRows().slice(0, 50) });
    const event = new CloudEvent({ id: `${legacy}.0.0`, source: '/test', type: EVENT_TYPES.samples, datacontenttype: 'text/tab-separated-values', data: body });
    const outcome = await collect([event, await batchEvent(1, 50, 80, legacy)]);
    expect(outcome.poison ?? []).toEqual([]);
    const rs = await ch.query({ query: 'SELECT count() AS n FROM samples WHERE upload_id = {u:String}', query_params: { u: legacy }, format: 'JSONEachRow' });
    expect(Number(((await rs.json()) as { n: string }[])[0].n)).toBe(80);
  });

  it('parses labels whose values hold quotes, commas, equals signs and backslashes (as remote write escapes them)', async () => {
    const upload = '00000000-0000-4000-8000-0000000001ab';
    const values = { job: 'a "quoted", job=1', path: 'C:\\new\\dir', plain: 'x' };
    const raw = labelsRaw(Object.entries(values).map(([name, value]) => ({ name, value })));
    const [{ sample, line }] = samples;
    const event = await sampleBatchEvent({ uploadId: upload, seq: 0, samples: [{ sample: { ...sample, labels_raw: raw }, line }] });
    expect((await collect([event])).poison ?? []).toEqual([]);
    const rs = await ch.query({ query: 'SELECT labels FROM samples WHERE upload_id = {u:String}', query_params: { u: upload }, format: 'JSONEachRow' });
    expect(await rs.json()).toEqual([{ labels: values }]);
  });

  it('an install whose labels were MATERIALIZED reads the same labels after re-provisioning (now an ALIAS)', async () => {
    const db = 'labels_upgrade';
    const current = migrations(db).find((s) => s.includes(`${db}.samples (`))!;
    const old = current.replace('labels Map(String, String) ALIAS', 'labels Map(String, String) MATERIALIZED');
    expect(old).not.toBe(current);
    await ch.command({ query: `CREATE DATABASE ${db}` });
    await ch.command({ query: old });
    const raw = labelsRaw([{ name: 'job', value: 'dcgm "a"' }, { name: 'gpu', value: '0' }]);
    // received_at now: within RAW_RETENTION_DAYS, which provisioning applies as a TTL.
    const row = (line: number) => ({ timestamp: '2025-07-18 20:42:34.000', metric_name: 'DCGM_FI_DEV_GPU_UTIL', uuid: 'GPU-1', value: 1, labels_raw: raw, batch_id: 'b', line, received_at: Date.now() });
    await ch.insert({ table: `${db}.samples`, values: [row(1)], format: 'JSONEachRow' });
    await provisionClickHouse(ch, db);
    await ch.insert({ table: `${db}.samples`, values: [row(2)], format: 'JSONEachRow' });
    const kind = await ch.query({ query: `SELECT default_kind FROM system.columns WHERE database = {db:String} AND table = 'samples' AND name = 'labels'`, query_params: { db }, format: 'JSONEachRow' });
    expect(await kind.json()).toEqual([{ default_kind: 'ALIAS' }]);
    const rs = await ch.query({ query: `SELECT line, labels FROM ${db}.samples ORDER BY line`, format: 'JSONEachRow' });
    expect(await rs.json()).toEqual([1, 2].map((line) => ({ line, labels: { job: 'dcgm "a"', gpu: '0' } })));
    await ch.command({ query: `DROP DATABASE ${db} SYNC` });
  });

  it('dead-letters only the batch ClickHouse rejects, not its neighbours', async () => {
    const mixed = '00000000-0000-4000-8000-0000000bad00';
    // A truncated block: ClickHouse cannot read it (a batch with 'not-a-time' in text formats).
    const [good, broken, third] = await batchEvents([0, 0, 100, mixed], [1, 100, 200, mixed, (block) => block.subarray(0, block.length - 100)], [2, 200, 300, mixed]);
    const outcome = await collect([good, broken, third]);
    expect(outcome.poison?.map((p) => p.index)).toEqual([1]);
    const rs = await ch.query({ query: 'SELECT count() AS n FROM samples WHERE upload_id = {u:String}', query_params: { u: mixed }, format: 'JSONEachRow' });
    expect(Number(((await rs.json()) as { n: string }[])[0].n)).toBe(200);
  });

  it('through JetStream: a batch republished under a new message id (after the duplicate window) is still stored once', async () => {
    const worker = await startPullWorker({
      nc,
      stream: STREAMS.telemetry,
      consumer: CONSUMERS.collect,
      cfg: parseEnv(workerEnv, {}),
      maxMessages: 10,
      maxWaitMs: 1000,
      rawData: true,
      handle: collect,
      log: () => undefined,
    });
    try {
      const js = nc.jetstream();
      for (const msgID of ['first', 'second']) {
        const msg = NATS.binary(await batchEvent(0, 0, 300));
        await js.publish(SUBJECTS.samples, msg.body, { headers: toNatsHeaders(msg), msgID });
      }
      const jsm = await nc.jetstreamManager();
      await waitFor(async () => {
        const info = await jsm.consumers.info(STREAMS.telemetry, CONSUMERS.collect);
        return info.num_pending + info.num_ack_pending === 0 && info.delivered.stream_seq >= 2;
      }, 'both messages acked', 15_000);
      expect(await stored()).toEqual({ rows: 2470, distinct: 2470 });
    } finally {
      await worker.stop();
    }
  });
});

describe('rollup passes (queued on ROLLUPS, run coalesced)', () => {
  const PASSES = '00000000-0000-4000-8000-0000000a55e5';
  const kvRows = async (id: string) => (await (await nc.jetstream().views.kv(BUCKETS.progress)).get(id))?.string();
  /** Versions of 1-minute buckets written since `since` (one per bucket a pass recomputed). */
  const minuteVersionsSince = async (since: number) => {
    const rs = await ch.query({
      query: 'SELECT count() AS n FROM rollup_1m WHERE updated_at >= fromUnixTimestamp64Milli({since:Int64})',
      query_params: { since },
      format: 'JSONEachRow',
    });
    return Number(((await rs.json()) as { n: string }[])[0].n);
  };

  it('queues one pass per stored group; one later pass recomputes every queued group and puts their progress', async () => {
    await runPendingPasses(nc, collect);
    const since = Date.now();
    await collect(await batchEvents([0, 0, 500, PASSES], [1, 500, 1000, PASSES]));
    await collect(await batchEvents([2, 1000, 1500, PASSES]));
    // Stored and acked, rollups and progress not yet: two events wait on ROLLUPS.
    expect(await minuteVersionsSince(since)).toBe(0);
    expect(await kvRows(`${PASSES}.0.0`)).toBeUndefined();
    const jsm = await nc.jetstreamManager();
    expect((await jsm.consumers.info(STREAMS.rollups, CONSUMERS.rollups)).num_pending).toBe(2);
    // One pass for both (as the worker hands them over together).
    expect(await runPendingPasses(nc, collect)).toBe(2);
    // Every metric of each touched GPU-minute is recomputed (batch_keys is per GPU and minute).
    expect(await minuteVersionsSince(since)).toBeGreaterThanOrEqual(1500);
    expect([await kvRows(`${PASSES}.0.0`), await kvRows(`${PASSES}.0.1`), await kvRows(`${PASSES}.0.2`)]).toEqual(['500', '500', '500']);
    expect((await jsm.consumers.info(STREAMS.rollups, CONSUMERS.rollups)).num_pending).toBe(0);
  });

  it('queues a redelivered group once (the event id derives from the batch ids)', async () => {
    await runPendingPasses(nc, collect);
    const group = await batchEvents([3, 1500, 1600, PASSES]);
    await collect(group);
    await collect(group);
    expect(await runPendingPasses(nc, collect)).toBe(1);
  });

  const inlinePasses = async () =>
    (await registry.getSingleMetric('gputel_collect_rollup_passes_total')!.get()).values.find((v) => v.labels.mode === 'inline')?.value ?? 0;

  it('runs the pass inline when ROLLUPS refuses the event (full), so a full queue never blocks acks', async () => {
    await runPendingPasses(nc, collect);
    const jsm = await nc.jetstreamManager();
    const config = (await jsm.streams.info(STREAMS.rollups)).config;
    await jsm.streams.update(STREAMS.rollups, { ...config, max_msgs: 1 });
    try {
      await nc.jetstream().publish(SUBJECTS.rollups, new Uint8Array(0)); // fills it
      const since = Date.now();
      const inline = await inlinePasses();
      expect((await collect(await batchEvents([4, 1600, 1700, PASSES]))).poison ?? []).toEqual([]);
      expect(await minuteVersionsSince(since)).toBeGreaterThanOrEqual(100);
      expect(await kvRows(`${PASSES}.0.4`)).toBe('100');
      expect(await inlinePasses()).toBe(inline + 1); // counted (and logged) for operators
    } finally {
      await jsm.streams.purge(STREAMS.rollups);
      await jsm.streams.update(STREAMS.rollups, config);
    }
  });

  it('dead-letters a malformed pass event without touching anything', async () => {
    const event = new CloudEvent({ id: 'rollups.bad', source: '/test', type: EVENT_TYPES.rollups, datacontenttype: 'application/json', data: { batches: [{ id: 'not an id', rows: 1 }] } });
    const outcome = await collect([event]);
    expect(outcome.poison?.[0].reason).toMatch(/^rollup pass event: batches\.0\.id: /);
  });
});
