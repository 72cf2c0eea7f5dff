import { CLICKHOUSE_TABLES as T, ROLLUP_LEVELS } from './names.ts';

// One ordered migration set; provisioning applies every statement (all idempotent) in order.
// Layout choices:
// - samples is not partitioned, so one INSERT (one block, see collect) is one part: atomic.
// - samples is ordered by (uuid, timestamp, metric_name): every telemetry query is one GPU and a
//   time range, so it reads a contiguous slice of the primary key.
// - the GPU inventory and metric stats are AggregatingMergeTree tables maintained by materialized
//   views at insert time, so /api/v1/gpus and /api/v1/metrics never scan samples.
// - collected_batches records which ingest batch ids are stored, written in the same INSERT as
//   the rows (via its view), which is what makes collect's redelivery handling exact.
// - labels is computed by ClickHouse from labels_raw when read (an ALIAS: `key="value",…`, `\"` and
//   `\\` escapes inside values as Prometheus writes them). Materialized at insert it cost ≈ 1.2 µs
//   of ClickHouse CPU per row (Native insert with the views 4.24 → 3.00, `npm run bench:formats`),
//   stored every label twice and was merged again and again; only telemetry pages read it.
// - A sample's identity is (uuid, metric_name, timestamp). samples keeps every copy stored (the
//   insert path stays an append); reads collapse copies, the row with the greatest
//   (received_at, batch_id, line) winning: the later upload wins.
// - batch_keys (filled by a view in the same INSERT) records the (uuid, minute) buckets
//   each batch touched, so collect recomputes exactly those rollup buckets without scanning samples.
// - rollup_1m/1h/1d hold exact aggregates of de-duplicated samples per epoch-aligned UTC bucket.
//   A recompute inserts a new version of a bucket (ReplacingMergeTree(updated_at)); readers use FINAL.
//   They hold no hostname or model: a GPU's identity is the gpus inventory's, which reads join.
//   Carrying them cost each level an argMax of two strings per bucket (npm run bench, two
//   alternated pairs: ClickHouse 17.95, 14.44 → 12.49, 11.75 µs/row on the default file).
// - The rollups are partitioned by bucket time (ROLLUP_PARTITION_KEYS), so a fleet-wide window
//   (top, anomalies) reads only its partitions: ordered by uuid first, an unpartitioned table was
//   read whole for any window. A bucket's versions share a partition (the key is a function of
//   t), so FINAL stays exact and collapses each partition on its own.

/** Orders the copies of one sample so that the winner comes first (for LIMIT 1 BY): the identity rule above. */
export const LATEST_COPY_FIRST = 'received_at DESC, batch_id DESC, line DESC';

/** labels_raw (`key="value",…`, values escaped as in Prometheus' exposition format) as a map. */
export const LABELS_MAP = `extractKeyValuePairsWithEscaping(labels_raw, '=', ',', '"')`;

type RollupTable = (typeof ROLLUP_LEVELS)[number]['table'];

/**
 * Partition per rollup level, as system.tables spells it: 1 min by day, 1 h by week, 1 d by
 * month (395 days of 1 min is ~400 partitions; a 24 h window reads one or two of them).
 */
export const ROLLUP_PARTITION_KEYS: Record<RollupTable, string> = {
  rollup_1m: 'toDate(t)',
  rollup_1h: 'toMonday(t)',
  rollup_1d: 'toYYYYMM(t)',
};

/** The DDL of a rollup table (`table`'s layout) under the qualified name `name`. */
export function rollupTableSql(name: string, table: RollupTable): string {
  return `CREATE TABLE IF NOT EXISTS ${name} (
      uuid LowCardinality(String),
      metric_name LowCardinality(String),
      t DateTime('UTC'),
      count UInt64,
      min Float64,
      max Float64,
      sum Float64,
      last Float64,
      last_ts DateTime64(3, 'UTC'),
      updated_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(updated_at) PARTITION BY ${ROLLUP_PARTITION_KEYS[table]} ORDER BY (uuid, metric_name, t)`;
}

export function migrations(database: string): string[] {
  const db = database;
  return [
    `CREATE DATABASE IF NOT EXISTS ${db}`,
    `CREATE TABLE IF NOT EXISTS ${db}.${T.samples} (
      timestamp DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
      metric_name LowCardinality(String),
      gpu_id LowCardinality(String),
      device LowCardinality(String),
      uuid LowCardinality(String),
      model_name LowCardinality(String),
      hostname LowCardinality(String),
      container LowCardinality(String),
      pod LowCardinality(String),
      namespace LowCardinality(String),
      value Float64 CODEC(Gorilla, ZSTD(1)),
      labels_raw String CODEC(ZSTD(3)),
      labels Map(String, String) ALIAS ${LABELS_MAP},
      upload_id LowCardinality(String),
      batch_id LowCardinality(String),
      line UInt32 CODEC(Delta, ZSTD(1)),
      received_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1))
    ) ENGINE = MergeTree
    ORDER BY (uuid, timestamp, metric_name)
    SETTINGS non_replicated_deduplication_window = 10000`,
    // Installs from before the ALIAS had it MATERIALIZED: their stored maps are no longer read; every
    // row's labels come from labels_raw, escapes handled.
    `ALTER TABLE ${db}.${T.samples} MODIFY COLUMN labels Map(String, String) ALIAS ${LABELS_MAP}`,
    // Installs from before received_at existed get the column (older rows read as 1970: oldest).
    `ALTER TABLE ${db}.${T.samples} ADD COLUMN IF NOT EXISTS received_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)) AFTER line`,
    `CREATE TABLE IF NOT EXISTS ${db}.${T.gpus} (
      uuid String,
      gpu_id SimpleAggregateFunction(anyLast, String),
      device SimpleAggregateFunction(anyLast, String),
      model_name SimpleAggregateFunction(anyLast, String),
      hostname SimpleAggregateFunction(anyLast, String),
      first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
      last_seen SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
      samples SimpleAggregateFunction(sum, UInt64),
      metrics SimpleAggregateFunction(groupUniqArrayArray, Array(String))
    ) ENGINE = AggregatingMergeTree ORDER BY uuid
    SETTINGS non_replicated_deduplication_window = 10000`,
    `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${T.gpus}_mv TO ${db}.${T.gpus} AS
      SELECT uuid,
        anyLast(gpu_id) AS gpu_id, anyLast(device) AS device,
        anyLast(model_name) AS model_name, anyLast(hostname) AS hostname,
        min(timestamp) AS first_seen, max(timestamp) AS last_seen,
        count() AS samples, groupUniqArray(toString(metric_name)) AS metrics
      FROM ${db}.${T.samples} GROUP BY uuid`,
    `CREATE TABLE IF NOT EXISTS ${db}.${T.metrics} (
      metric_name String,
      samples SimpleAggregateFunction(sum, UInt64),
      min_value SimpleAggregateFunction(min, Float64),
      max_value SimpleAggregateFunction(max, Float64),
      sum_value SimpleAggregateFunction(sum, Float64),
      first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
      last_seen SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
      gpus AggregateFunction(uniq, String)
    ) ENGINE = AggregatingMergeTree ORDER BY metric_name
    SETTINGS non_replicated_deduplication_window = 10000`,
    `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${T.metrics}_mv TO ${db}.${T.metrics} AS
      SELECT toString(metric_name) AS metric_name, count() AS samples,
        min(value) AS min_value, max(value) AS max_value, sum(value) AS sum_value,
        min(timestamp) AS first_seen, max(timestamp) AS last_seen,
        uniqState(toString(uuid)) AS gpus
      FROM ${db}.${T.samples} GROUP BY metric_name`,
    `CREATE TABLE IF NOT EXISTS ${db}.${T.batches} (
      batch_id String,
      upload_id String,
      rows UInt64
    ) ENGINE = ReplacingMergeTree ORDER BY batch_id
    SETTINGS non_replicated_deduplication_window = 10000`,
    `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${T.batches}_mv TO ${db}.${T.batches} AS
      SELECT toString(batch_id) AS batch_id, any(toString(upload_id)) AS upload_id, count() AS rows
      FROM ${db}.${T.samples} GROUP BY batch_id`,
    `CREATE TABLE IF NOT EXISTS ${db}.${T.batchKeys} (
      batch_id String,
      uuid LowCardinality(String),
      t DateTime('UTC'),
      received_at DateTime64(3, 'UTC')
    ) ENGINE = MergeTree ORDER BY (batch_id, uuid, t)
    SETTINGS non_replicated_deduplication_window = 10000`,
    // Per GPU and minute, not per metric: a GPU's metrics are scraped together, so this is ~10×
    // fewer rows for the same recompute (all metrics of a touched GPU-minute are recomputed).
    `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${T.batchKeys}_mv TO ${db}.${T.batchKeys} AS
      SELECT toString(batch_id) AS batch_id, uuid, toStartOfMinute(timestamp) AS t, max(received_at) AS received_at
      FROM ${db}.${T.samples} GROUP BY batch_id, uuid, t`,
    ...ROLLUP_LEVELS.map(({ table }) => rollupTableSql(`${db}.${table}`, table)),
    // Installs from before the rollups dropped hostname and model (a metadata change; the parts
    // lose the two columns' files). A recompute of an older collect still running then fails and
    // its pass is redelivered to the new one.
    ...ROLLUP_LEVELS.map(({ table }) => `ALTER TABLE ${db}.${table} DROP COLUMN IF EXISTS hostname, DROP COLUMN IF EXISTS model_name`),
    `CREATE TABLE IF NOT EXISTS ${db}.${T.rollupBackfills} (
      done_at DateTime64(3, 'UTC'),
      samples UInt64
    ) ENGINE = MergeTree ORDER BY done_at`,
  ];
}

export interface Retention {
  /** Raw samples (and batch_keys) are deleted this many days after they were received. */
  rawDays: number;
  /** A rollup bucket is deleted this many days after it was last recomputed. */
  rollupDays: number;
}
export const DEFAULT_RETENTION: Retention = { rawDays: 30, rollupDays: 395 };

/**
 * TTL per table. The clock is when data arrived (received_at) or was last recomputed (updated_at),
 * not the sample's own timestamp: an import of last year's files stays queryable after upload.
 */
export function retentionTtls(r: Retention): { table: string; ttl: string }[] {
  return [
    { table: T.samples, ttl: `toDateTime(received_at) + toIntervalDay(${r.rawDays})` },
    { table: T.batchKeys, ttl: `toDateTime(received_at) + toIntervalDay(${r.rawDays})` },
    ...ROLLUP_LEVELS.map(({ table }) => ({ table, ttl: `toDateTime(updated_at) + toIntervalDay(${r.rollupDays})` })),
  ];
}

/** Column order of the TabSeparated batches ingest publishes and collect inserts verbatim. */
export const SAMPLE_INSERT_COLUMNS = [
  'timestamp', 'metric_name', 'gpu_id', 'device', 'uuid', 'model_name', 'hostname',
  'container', 'pod', 'namespace', 'value', 'labels_raw', 'upload_id', 'batch_id', 'line', 'received_at',
] as const;
