// The one place where stream, subject, consumer, bucket and event-type names live.
// Provisioning, the functions, the local autoscaler and the keda/ manifests (checked by
// test/manifests) all read these, so a rename here without the manifests fails CI.

export const STREAMS = {
  /** `csv.uploaded` events: one per stored, line-aligned part of an uploaded file. */
  uploads: 'CSV_UPLOADS',
  /** Batches of validated samples on their way to ClickHouse. */
  telemetry: 'TELEMETRY',
  /** Rollup passes to run: one event per group of stored batches, listing them (collect). */
  rollups: 'ROLLUPS',
  /** Messages a worker gave up on, with the reason in headers. */
  deadLetter: 'DEAD_LETTER',
} as const;

export const SUBJECTS = {
  uploaded: 'csv.uploaded',
  samples: 'telemetry.samples',
  rollups: 'rollups.pending',
  /**
   * Core NATS (not a stream): collect announces each stored group of batches here
   * (`{ batches: string[], rows: number }`, best effort) and query relays them to live clients.
   */
  stored: 'telemetry.stored',
  /** `deadletter.<consumer>`; the stream captures `deadletter.>`. */
  deadLetter: (consumer: string) => `deadletter.${consumer}`,
  deadLetterAll: 'deadletter.>',
} as const;

/** Durable pull consumers, each with a KEDA trigger on the function that drains it. */
export const CONSUMERS = {
  ingest: 'ingest',
  collect: 'collect',
  /** Also collect's: its rollup passes. */
  rollups: 'rollups',
} as const;

export const BUCKETS = {
  /** Object store holding uploaded CSV parts. */
  objects: 'csv_uploads',
  /** KV: upload records (`<id>`) and per-part ingest results (`<id>.part.<n>`). */
  status: 'upload_status',
  /** KV: one key per batch stored in ClickHouse (`<id>.<part>.<seq>` → rows). */
  progress: 'upload_progress',
} as const;
/** The stream behind a KV bucket, and the subject of one of its keys (the JetStream KV layout). */
export const kvStream = (bucket: string) => `KV_${bucket}`;
export const kvSubject = (bucket: string, key: string) => `$KV.${bucket}.${key}`;

export const EVENT_TYPES = {
  uploaded: 'com.gputelemetry.csv.uploaded',
  samples: 'com.gputelemetry.samples.batch',
  rollups: 'com.gputelemetry.rollups.pending',
} as const;

/** CloudEvent `source` of the events each function publishes. */
export const EVENT_SOURCES = {
  upload: '/functions/upload',
  ingest: '/functions/ingest',
  collect: '/functions/collect',
  remoteWrite: '/functions/remote-write',
} as const;

/** NATS account KEDA reads `/jsz` for; `$G` is the global account of a server without accounts. */
export const DEFAULT_NATS_ACCOUNT = '$G';

export const CLICKHOUSE_TABLES = {
  samples: 'samples',
  gpus: 'gpus',
  metrics: 'metric_stats',
  batches: 'collected_batches',
  /** Per stored batch, the (uuid, minute) buckets it touched: what collect recomputes. */
  batchKeys: 'batch_keys',
  /** Exact aggregates of de-duplicated samples per (uuid, metric, bucket); read with FINAL. */
  rollup1m: 'rollup_1m',
  rollup1h: 'rollup_1h',
  rollup1d: 'rollup_1d',
  /** One row once provisioning has built the rollups of the samples stored before they existed. */
  rollupBackfills: 'rollup_backfills',
} as const;

/** Rollup levels, finest first: table and bucket width in seconds (epoch-aligned UTC buckets). */
export const ROLLUP_LEVELS = [
  { table: CLICKHOUSE_TABLES.rollup1m, seconds: 60 },
  { table: CLICKHOUSE_TABLES.rollup1h, seconds: 3600 },
  { table: CLICKHOUSE_TABLES.rollup1d, seconds: 86_400 },
] as const;
