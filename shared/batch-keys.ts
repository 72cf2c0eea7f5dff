import { CLICKHOUSE_TABLES as T } from './names.ts';

// Reading what given batches stored without scanning samples' batch_id (not in its sort key):
// batch_keys (filled by a view in each batch's INSERT) holds the (uuid, minute) buckets a batch
// touched, which turn into primary-key ranges. Used by the rollup recompute and live reads.

/**
 * `keys AS (…)`: the `(uuid, b)` buckets of width `seconds` that the batches in the query
 * parameter `param` (Array(String)) touched, every metric.
 */
export const touchedBucketsCte = (seconds: number, param: string) =>
  `keys AS (SELECT DISTINCT uuid, toStartOfInterval(t, INTERVAL ${seconds} SECOND) AS b
     FROM ${T.batchKeys} WHERE batch_id IN {${param}:Array(String)})`;

/** Restricts a table to the `keys` buckets by its `time` column (primary key prefix and time range first). */
export const inTouchedBuckets = (time: string, seconds: number) =>
  `uuid IN (SELECT uuid FROM keys)
     AND ${time} >= (SELECT min(b) FROM keys) AND ${time} < (SELECT max(b) FROM keys) + ${seconds}
     AND (uuid, toStartOfInterval(${time}, INTERVAL ${seconds} SECOND)) IN (SELECT uuid, b FROM keys)`;
