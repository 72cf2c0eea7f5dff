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
import { migrations } from './migrations.ts';
import { BUCKETS, CONSUMERS, STREAMS, SUBJECTS } from './names.ts';

// Explicit, idempotent provisioning of every stream, consumer, bucket and table. It runs before
// the workers (a CLI command locally, a Kubernetes Job in the cluster): KEDA ≥ 2.20 reports an
// error for a consumer that does not exist, so a worker scaled to zero that created its own
// consumer would never be started.

export const provisionEnv = z.object({
  /** Redelivery timer for an unacknowledged message (workers send progress while busy). */
  CONSUMER_ACK_WAIT_MS: intVar(60_000, 1000),
  /** Cap on messages in flight per consumer across all replicas. */
  INGEST_MAX_ACK_PENDING: intVar(64, 1),
  COLLECT_MAX_ACK_PENDING: intVar(2000, 1),
  /** Telemetry stream size cap; publishers get back-pressure (discard new) beyond it. */
  TELEMETRY_STREAM_MAX_BYTES: intVar(8 * 1024 ** 3, 1024 ** 2),
  /** How long uploaded files, statuses and dead letters are kept. */
  RETENTION_HOURS: intVar(7 * 24, 1),
  /** JetStream replicas for streams and buckets (3 on a clustered JetStream). */
  JETSTREAM_REPLICAS: intVar(1, 1, 5),
});
export type ProvisionConfig = z.infer<typeof provisionEnv>;

const hours = (h: number) => nanos(h * 3600_000);

export function streamConfigs(cfg: ProvisionConfig): Partial<StreamConfig>[] {
  const common = { storage: StorageType.File, num_replicas: cfg.JETSTREAM_REPLICAS };
  return [
    {
      ...common,
      name: STREAMS.uploads,
      subjects: [SUBJECTS.uploaded],
      retention: RetentionPolicy.Workqueue,
      max_age: hours(cfg.RETENTION_HOURS),
      duplicate_window: nanos(10 * 60_000),
    },
    {
      ...common,
      name: STREAMS.telemetry,
      subjects: [SUBJECTS.samples],
      retention: RetentionPolicy.Workqueue,
      max_bytes: cfg.TELEMETRY_STREAM_MAX_BYTES,
      discard: DiscardPolicy.New,
      max_msg_size: 8 * 1024 * 1024,
      // Batch ids are deterministic, so an ingest retry inside this window is dropped here;
      // collect's batch ledger covers retries after it.
      duplicate_window: nanos(10 * 60_000),
    },
    {
      ...common,
      name: STREAMS.deadLetter,
      subjects: [SUBJECTS.deadLetterAll],
      retention: RetentionPolicy.Limits,
      max_age: hours(cfg.RETENTION_HOURS),
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
  await js.views.os(BUCKETS.objects, { ttl: nanos(ttl), replicas: cfg.JETSTREAM_REPLICAS });
}

export async function provisionClickHouse(client: ClickHouseClient, database: string): Promise<void> {
  for (const statement of migrations(database)) await client.command({ query: statement });
}
