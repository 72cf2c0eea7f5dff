import type { ClickHouseClient } from '@clickhouse/client';
import { CLICKHOUSE_TABLES as T, ROLLUP_LEVELS } from '../../shared/names.ts';

// Rollup maintenance: after collect has stored batches (or found them already stored: a crash
// between the insert and this step is repaired by the redelivery), the buckets those batches
// touched are recomputed, one INSERT … SELECT per level:
//   rollup_1m from de-duplicated samples (per identity the row with the greatest
//   (received_at, batch_id, line): the later upload wins), rollup_1h from rollup_1m FINAL,
//   rollup_1d from rollup_1h FINAL.
// Touched buckets come from batch_keys (written by a view in the batch's own INSERT), so no step
// scans samples beyond the touched (uuid, minute) keys and time range. A recompute writes a new
// version of each bucket (ReplacingMergeTree(updated_at = now64() at query start)): of two
// concurrent recomputes of one bucket, the one that started later saw every insert committed
// before it and wins, so the result is exact whatever the interleaving.

const COLUMNS = 'uuid, metric_name, hostname, model_name, t, count, min, max, sum, last, last_ts, updated_at';

/** The touched buckets of one level: `(uuid, bucket start)` of the given batches (every metric). */
const touched = (seconds: number) =>
  `keys AS (SELECT DISTINCT uuid, toStartOfInterval(t, INTERVAL ${seconds} SECOND) AS b
     FROM ${T.batchKeys} WHERE batch_id IN {ids:Array(String)})`;

/** Restricts a source table to the touched keys (primary key prefix and time range first). */
const inTouched = (time: string, seconds: number) =>
  `uuid IN (SELECT uuid FROM keys)
     AND ${time} >= (SELECT min(b) FROM keys) AND ${time} < (SELECT max(b) FROM keys) + ${seconds}
     AND (uuid, toStartOfInterval(${time}, INTERVAL ${seconds} SECOND)) IN (SELECT uuid, b FROM keys)`;

/** rollup_1m for the touched minutes, from samples with duplicates collapsed. */
export function minuteRollupSql(): string {
  const { table, seconds } = ROLLUP_LEVELS[0];
  return `INSERT INTO ${table} (${COLUMNS})
    WITH ${touched(seconds)}
    SELECT uuid, metric_name, argMax(h, ts), argMax(m, ts), toStartOfInterval(ts, INTERVAL ${seconds} SECOND) AS bucket,
      count(), min(v), max(v), sum(v), argMax(v, ts), max(ts), now64(3)
    FROM (
      -- The winning copy of each sample (measured cheaper here than argMax per column).
      SELECT uuid, metric_name, timestamp AS ts, value AS v, hostname AS h, model_name AS m
      FROM ${T.samples}
      WHERE ${inTouched('timestamp', seconds)}
      ORDER BY uuid, metric_name, timestamp, received_at DESC, batch_id DESC, line DESC
      LIMIT 1 BY uuid, metric_name, timestamp
    )
    GROUP BY uuid, metric_name, bucket`;
}

/** A coarser level from the level below it (FINAL: the latest version of each finer bucket). */
export function coarserRollupSql(level: number): string {
  const { table, seconds } = ROLLUP_LEVELS[level];
  const below = ROLLUP_LEVELS[level - 1].table;
  return `INSERT INTO ${table} (${COLUMNS})
    WITH ${touched(seconds)}
    SELECT uuid, metric_name, argMax(hostname, last_ts), argMax(model_name, last_ts),
      toStartOfInterval(t, INTERVAL ${seconds} SECOND) AS bucket,
      sum(count), min(min), max(max), sum(sum), argMax(last, last_ts), max(last_ts), now64(3)
    FROM ${below} FINAL
    WHERE ${inTouched('t', seconds)}
    GROUP BY uuid, metric_name, bucket`;
}

/** Recomputes every rollup bucket the given (stored) batches touched, finest level first. */
export async function recomputeRollups(ch: ClickHouseClient, batchIds: string[]): Promise<void> {
  if (batchIds.length === 0) return;
  const statements = [minuteRollupSql(), ...ROLLUP_LEVELS.slice(1).map((_, i) => coarserRollupSql(i + 1))];
  for (const query of statements) {
    await ch.command({ query, query_params: { ids: batchIds } });
  }
}
