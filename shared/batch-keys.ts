import { CLICKHOUSE_TABLES as T } from './names.ts';

// Reading what given batches stored without scanning samples' batch_id (not in its sort key):
// batch_keys (filled by a view in each batch's INSERT) holds the (uuid, minute) buckets a batch
// touched, which turn into primary-key ranges. Used by the rollup recompute and live reads.

/**
 * `keys AS (…)`: the `(uuid, b)` buckets of width `seconds` that the batches in the query
 * parameter `param` (Array(String)) touched, every metric. `sliced`: only GPUs whose uuid is in
 * [`{lo}`, `{hi}`) (`{hi}` empty: no upper bound), a contiguous range of every table's primary key,
 * so one statement's work and memory stay bounded (touchedSliceBounds).
 */
export const touchedBucketsCte = (seconds: number, param: string, sliced = false) =>
  `keys AS (SELECT DISTINCT uuid, toStartOfInterval(t, INTERVAL ${seconds} SECOND) AS b
     FROM ${T.batchKeys} WHERE batch_id IN {${param}:Array(String)}${sliced ? " AND uuid >= {lo:String} AND ({hi:String} = '' OR uuid < {hi:String})" : ''})`;

/**
 * The first uuid of each slice of the GPUs the batches in `param` touched, in uuid order, each
 * slice holding about `{per}` (uuid, minute) keys (a GPU's keys are never split): one row per slice.
 */
export const touchedSliceBoundsSql = (param: string) =>
  `SELECT min(uuid) AS lo FROM (
     SELECT uuid, sum(c) OVER (ORDER BY uuid ROWS UNBOUNDED PRECEDING) - c AS before
     FROM (SELECT uuid, count() AS c FROM (SELECT DISTINCT uuid, t FROM ${T.batchKeys} WHERE batch_id IN {${param}:Array(String)}) GROUP BY uuid))
   GROUP BY intDiv(before, {per:UInt64}) ORDER BY lo`;

/** Restricts a table to the `keys` buckets by its `time` column (primary key prefix and time range first). */
export const inTouchedBuckets = (time: string, seconds: number) =>
  `uuid IN (SELECT uuid FROM keys)
     AND ${time} >= (SELECT min(b) FROM keys) AND ${time} < (SELECT max(b) FROM keys) + ${seconds}
     AND (uuid, toStartOfInterval(${time}, INTERVAL ${seconds} SECOND)) IN (SELECT uuid, b FROM keys)`;
