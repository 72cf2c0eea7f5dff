import type { ClickHouseClient } from '@clickhouse/client';
import { CLICKHOUSE_TABLES as T } from '../../shared/names.ts';

// Rebuilds the rollup tables of a database from its samples (duplicates collapsed: per
// (uuid, metric_name, timestamp) the row with the greatest (received_at, batch_id, line) wins),
// exactly as the shared contract defines them. Tests and the query benchmark use it to fill the
// rollups without the collect path; collect maintains them in production.

const BUCKETS = [
  [T.rollup1m, 'toStartOfMinute'],
  [T.rollup1h, 'toStartOfHour'],
  [T.rollup1d, 'toStartOfDay'],
] as const;

export function rollupInsertSql(database: string, table: string, bucket: string, where = '1'): string {
  return `INSERT INTO ${database}.${table}
    SELECT uuid, metric_name, anyLast(h) AS hostname, anyLast(m) AS model_name, toDateTime(${bucket}(timestamp), 'UTC') AS t,
      count() AS count, min(v) AS min, max(v) AS max, sum(v) AS sum, argMax(v, timestamp) AS last, max(timestamp) AS last_ts,
      now64(3, 'UTC') AS updated_at
    FROM (
      SELECT uuid, metric_name, timestamp, argMax(value, (received_at, batch_id, line)) AS v,
        argMax(hostname, (received_at, batch_id, line)) AS h, argMax(model_name, (received_at, batch_id, line)) AS m
      FROM ${database}.${T.samples} WHERE ${where}
      GROUP BY uuid, metric_name, timestamp)
    GROUP BY uuid, metric_name, t`;
}

export async function rebuildRollups(client: ClickHouseClient, database: string): Promise<void> {
  for (const [table, bucket] of BUCKETS) {
    await client.command({ query: rollupInsertSql(database, table, bucket), clickhouse_settings: { prefer_column_name_to_alias: 1 } });
  }
}
