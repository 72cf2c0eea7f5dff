import {
  AckPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  nanos,
  type ConsumerConfig,
  type JetStreamManager,
  type NatsConnection,
  type StreamConfig,
} from 'nats';
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { intVar } from './config.ts';
import { logSweep, sweepWorkQueues } from './janitor.ts';
import { DEFAULT_RETENTION, migrations, retentionTtls, ROLLUP_PARTITION_KEYS, rollupTableSql, type Retention } from './migrations.ts';
import { loggerFor } from './log.ts';
import { BUCKETS, CLICKHOUSE_TABLES, CONSUMERS, ROLLUP_LEVELS, STREAMS, SUBJECTS, kvStream } from './names.ts';
import { relayoutTable } from './relayout.ts';
import { backfillRollups } from './rollups.ts';
import { objectStream } from './object-store.ts';

// Explicit, idempotent provisioning of every stream, consumer, bucket and table. It runs before
// the workers (a CLI command locally, a Kubernetes Job in the cluster): KEDA ≥ 2.20 reports an
// error for a consumer that does not exist, so a worker scaled to zero that created its own
// consumer would never be started.

export const provisionEnv = z.object({
  /**
   * Redelivery timer for a message nobody signals progress on: how long the work of a killed
   * worker waits. Workers heartbeat every WORKER_HEARTBEAT_MS (at most a third of this).
   */
  CONSUMER_ACK_WAIT_MS: intVar(10_000, 1000),
  /** Cap on messages in flight per consumer across all replicas. */
  INGEST_MAX_ACK_PENDING: intVar(64, 1),
  COLLECT_MAX_ACK_PENDING: intVar(2000, 1),
  // Bounds: every stream refuses new messages when full (discard new), so producers get
  // back-pressure (upload 503 + Retry-After, ingest retries) and nothing stored is ever dropped.
  // JetStream reserves each max_bytes from its max_file_store when the stream is created.
  /** Parts waiting for ingest (one small csv.uploaded event each). */
  UPLOADS_STREAM_MAX_MSGS: intVar(100_000, 10),
  /** Sample batches waiting for collect. */
  TELEMETRY_STREAM_MAX_BYTES: intVar(8 * 1024 ** 3, 1024 ** 2),
  /** Rollup passes waiting for collect (a small event per stored group of batches). */
  ROLLUPS_STREAM_MAX_MSGS: intVar(100_000, 10),
  /** Dead letters kept; when full, a failing message stays unacknowledged instead of being dropped. */
  DEAD_LETTER_STREAM_MAX_BYTES: intVar(1024 ** 3, 1024 ** 2),
  /** Uploaded parts in the object store (deleted once ingested; failed ones kept for RETENTION_HOURS). */
  UPLOAD_STORE_MAX_BYTES: intVar(4 * 1024 ** 3, 1024 ** 2),
  /** How long uploaded files, statuses and dead letters are kept. */
  RETENTION_HOURS: intVar(7 * 24, 1),
  /**
   * Days raw samples are kept after they were received (TTL on received_at, so a historical import
   * is queryable after upload); their rollups stay (ROLLUP_RETENTION_DAYS).
   */
  RAW_RETENTION_DAYS: intVar(DEFAULT_RETENTION.rawDays, 1, 36_500),
  /** Days a rollup bucket (1 min, 1 h, 1 d) is kept after it was last recomputed (TTL on updated_at). */
  ROLLUP_RETENTION_DAYS: intVar(DEFAULT_RETENTION.rollupDays, 1, 36_500),
  /** JetStream replicas for streams and buckets (3 on a clustered JetStream). */
  JETSTREAM_REPLICAS: intVar(1, 1, 5),
});
export type ProvisionConfig = z.infer<typeof provisionEnv>;

const hours = (h: number) => nanos(h * 3600_000);

/** Limits spelled out in full: an update merges into the existing config, so an omitted one would stay. */
const limits = (l: { max_msgs?: number; max_bytes?: number; max_age?: number; max_msg_size: number }) => ({
  max_msgs: l.max_msgs ?? -1,
  max_bytes: l.max_bytes ?? -1,
  max_age: l.max_age ?? 0,
  max_msg_size: l.max_msg_size,
  discard: DiscardPolicy.New,
});

export function streamConfigs(cfg: ProvisionConfig): Partial<StreamConfig>[] {
  const common = { storage: StorageType.File, num_replicas: cfg.JETSTREAM_REPLICAS };
  // Work queues have no age limit: a message older than it would be deleted unprocessed, i.e.
  // data lost whenever its consumer is down (or scaled to zero and failing) for longer. Their
  // producers' message ids are deterministic, so a retry inside the duplicate window is dropped.
  const workQueue = { ...common, retention: RetentionPolicy.Workqueue, duplicate_window: nanos(10 * 60_000) };
  return [
    {
      ...workQueue,
      name: STREAMS.uploads,
      subjects: [SUBJECTS.uploaded],
      // An event is well under 1 KiB (ids, the header's column names, counters).
      ...limits({ max_msgs: cfg.UPLOADS_STREAM_MAX_MSGS, max_msg_size: 64 * 1024 }),
    },
    {
      ...workQueue,
      name: STREAMS.telemetry,
      subjects: [SUBJECTS.samples],
      // An ingest retry after the duplicate window is covered by collect's batch ledger.
      ...limits({ max_bytes: cfg.TELEMETRY_STREAM_MAX_BYTES, max_msg_size: 8 * 1024 * 1024 }),
    },
    {
      ...workQueue,
      name: STREAMS.rollups,
      subjects: [SUBJECTS.rollups],
      // An event lists the ids and rows of at most one fetch of batches; its id derives from them,
      // so the event of a redelivered group is dropped.
      ...limits({ max_msgs: cfg.ROLLUPS_STREAM_MAX_MSGS, max_msg_size: 256 * 1024 }),
    },
    {
      ...common,
      name: STREAMS.deadLetter,
      subjects: [SUBJECTS.deadLetterAll],
      retention: RetentionPolicy.Limits,
      // Kept for inspection, not for processing: here an age limit loses nothing unprocessed.
      ...limits({ max_bytes: cfg.DEAD_LETTER_STREAM_MAX_BYTES, max_age: hours(cfg.RETENTION_HOURS), max_msg_size: 8 * 1024 * 1024 }),
    },
  ];
}

export function consumerConfigs(cfg: ProvisionConfig): { stream: string; config: Partial<ConsumerConfig> }[] {
  const common = {
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(cfg.CONSUMER_ACK_WAIT_MS),
    // Unlimited on the server: workers bound retries of failing messages themselves
    // (WORKER_MAX_DELIVER, then dead letter) while outages are retried until they end.
    max_deliver: -1,
  };
  return [
    {
      stream: STREAMS.uploads,
      config: { ...common, durable_name: CONSUMERS.ingest, filter_subject: SUBJECTS.uploaded, max_ack_pending: cfg.INGEST_MAX_ACK_PENDING },
    },
    {
      stream: STREAMS.telemetry,
      config: { ...common, durable_name: CONSUMERS.collect, filter_subject: SUBJECTS.samples, max_ack_pending: cfg.COLLECT_MAX_ACK_PENDING },
    },
    {
      stream: STREAMS.rollups,
      config: { ...common, durable_name: CONSUMERS.rollups, filter_subject: SUBJECTS.rollups, max_ack_pending: cfg.COLLECT_MAX_ACK_PENDING },
    },
  ];
}

async function upsertStream(jsm: JetStreamManager, config: Partial<StreamConfig>): Promise<void> {
  try {
    await jsm.streams.info(config.name!);
    await jsm.streams.update(config.name!, config);
  } catch (e) {
    if (!String(e).includes('not found')) throw e;
    await jsm.streams.add(config);
  }
}

async function upsertConsumer(jsm: JetStreamManager, stream: string, config: Partial<ConsumerConfig>): Promise<void> {
  try {
    await jsm.consumers.info(stream, config.durable_name!);
    await jsm.consumers.update(stream, config.durable_name!, config);
  } catch (e) {
    if (!String(e).includes('not found')) throw e;
    await jsm.consumers.add(stream, config);
  }
}

export async function provisionNats(nc: NatsConnection, cfg: ProvisionConfig): Promise<void> {
  const jsm = await nc.jetstreamManager();
  for (const s of streamConfigs(cfg)) await upsertStream(jsm, s);
  for (const c of consumerConfigs(cfg)) await upsertConsumer(jsm, c.stream, c.config);
  const js = nc.jetstream();
  const ttl = cfg.RETENTION_HOURS * 3600_000;
  await js.views.kv(BUCKETS.status, { history: 1, ttl, replicas: cfg.JETSTREAM_REPLICAS });
  await js.views.kv(BUCKETS.progress, { history: 1, ttl, replicas: cfg.JETSTREAM_REPLICAS });
  // Object store ttl is in nanoseconds (the KV one above is in milliseconds).
  await js.views.os(BUCKETS.objects, { ttl: nanos(ttl), replicas: cfg.JETSTREAM_REPLICAS, max_bytes: cfg.UPLOAD_STORE_MAX_BYTES });
  // The views only create buckets; a re-run applies changed limits to the existing ones.
  for (const bucket of [BUCKETS.status, BUCKETS.progress]) await jsm.streams.update(kvStream(bucket), { max_age: nanos(ttl) });
  await jsm.streams.update(objectStream(BUCKETS.objects), { max_age: nanos(ttl), max_bytes: cfg.UPLOAD_STORE_MAX_BYTES, discard: DiscardPolicy.New });
  // Messages acknowledged before a NATS crash but left behind (see janitor.ts).
  for (const r of await sweepWorkQueues(jsm)) logSweep(r);
}

export const retentionOf = (cfg: Pick<ProvisionConfig, 'RAW_RETENTION_DAYS' | 'ROLLUP_RETENTION_DAYS'>): Retention => ({
  rawDays: cfg.RAW_RETENTION_DAYS,
  rollupDays: cfg.ROLLUP_RETENTION_DAYS,
});

export async function provisionClickHouse(client: ClickHouseClient, database: string, retention: Retention = DEFAULT_RETENTION): Promise<void> {
  for (const statement of migrations(database)) await client.command({ query: statement });
  // Rollup tables created before they were partitioned (CREATE … IF NOT EXISTS left them as they were).
  for (const { table } of ROLLUP_LEVELS) {
    const t0 = performance.now();
    const done = await relayoutTable(client, {
      database,
      table,
      partitionKey: ROLLUP_PARTITION_KEYS[table],
      create: (name) => rollupTableSql(name, table),
      version: 'updated_at',
    });
    if (done !== 'unchanged') {
      const ms = Math.round(performance.now() - t0);
      loggerFor('provision').info({ database, table, partition_key: ROLLUP_PARTITION_KEYS[table], done, ms }, 'rollup table moved to its partitioned layout');
    }
  }
  await backfillRollupsOnce(client, database);
  // MODIFY TTL only where it changed: the ALTER recomputes TTL information for every part.
  for (const { table, ttl } of retentionTtls(retention)) {
    const rs = await client.query({
      query: 'SELECT create_table_query AS q FROM system.tables WHERE database = {db:String} AND name = {table:String}',
      query_params: { db: database, table },
      format: 'JSONEachRow',
    });
    const [row] = await rs.json<{ q: string }>();
    if (!row?.q.includes(`TTL ${ttl} `) && !row?.q.endsWith(`TTL ${ttl}`)) {
      await client.command({ query: `ALTER TABLE ${database}.${table} MODIFY TTL ${ttl}` });
    }
  }
}

/**
 * Samples stored before the rollup tables existed (an install upgraded from a release without
 * them) have no rollups, and /gpus, /metrics and series read rollups: build them once, then
 * record it. A fresh install records it at once (no samples). An interrupted backfill is redone
 * by the next provisioning (it is idempotent).
 */
async function backfillRollupsOnce(client: ClickHouseClient, database: string): Promise<void> {
  const table = `${database}.${CLICKHOUSE_TABLES.rollupBackfills}`;
  const rs = await client.query({ query: `SELECT count() AS n FROM ${table}`, format: 'JSONEachRow' });
  if (Number((await rs.json<{ n: string }>())[0].n) > 0) return;
  const samples = await backfillRollups(client, database);
  if (samples > 0) loggerFor('provision').info({ database, samples }, 'built the rollups of samples stored before they existed');
  await client.command({ query: `INSERT INTO ${table} SELECT now64(3), {samples:UInt64}`, query_params: { samples } });
}
