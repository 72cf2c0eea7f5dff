import type { ClickHouseClient, ClickHouseSettings } from '@clickhouse/client';
import { retryRead } from '../../shared/clickhouse.ts';
import { CLICKHOUSE_TABLES as T } from '../../shared/names.ts';
import type { CursorKey } from './cursor.ts';

// Every query the API runs; values only ever travel as bound {name:Type} parameters. The GPU and
// metric listings read the small aggregate tables the materialized views maintain, never samples;
// per-GPU reads hit samples' primary key prefix (uuid, timestamp).

export const SETTINGS: ClickHouseSettings = {
  // Counts as JSON numbers, not strings (all stay far below 2^53).
  output_format_json_quote_64bit_integers: 0,
  // DateTime64 as `2025-07-18T20:42:34.000Z`, independent of how the client was created.
  date_time_output_format: 'iso',
  // Lets `sum(samples) AS samples` aggregate the column rather than refer to itself.
  prefer_column_name_to_alias: 1,
  max_execution_time: 60,
};

export async function rows<T>(
  client: ClickHouseClient,
  query: string,
  params: Record<string, unknown>,
  signal?: AbortSignal,
  settings: ClickHouseSettings = SETTINGS,
): Promise<T[]> {
  // Reads only, so a request lost to the keep-alive race is safe to send again.
  return retryRead(async () => {
    const result = await client.query({ query, query_params: params, format: 'JSONEachRow', clickhouse_settings: settings, abort_signal: signal });
    return result.json<T>();
  }, signal);
}

export interface GpuRow {
  uuid: string;
  gpu_id: string;
  device: string;
  model_name: string;
  hostname: string;
  first_seen: string;
  last_seen: string;
  samples: number;
  metrics: string[];
}

export async function gpuExists(client: ClickHouseClient, uuid: string, signal?: AbortSignal): Promise<boolean> {
  const found = await rows(client, `SELECT 1 AS found FROM ${T.gpus} WHERE uuid = {uuid:String} LIMIT 1`, { uuid }, signal);
  return found.length > 0;
}

export interface Window {
  uuid: string;
  /** Inclusive bounds, epoch milliseconds. */
  start?: number;
  end?: number;
  metric?: string;
}

// DateTime64(3) covers 1900-01-01 … 2299-12-31; bounds outside it select the same rows as the
// range edges, so clamping keeps the answer exact and the conversion defined.
const MIN_MS = Date.UTC(1900, 0, 1);
const MAX_MS = Date.UTC(2299, 11, 31, 23, 59, 59, 999);
export const clamp = (ms: number) => Math.min(MAX_MS, Math.max(MIN_MS, ms));

function windowFilter(w: Window): { where: string; params: Record<string, unknown> } {
  const where = ['uuid = {uuid:String}'];
  const params: Record<string, unknown> = { uuid: w.uuid };
  if (w.start !== undefined) {
    where.push(`timestamp >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')`);
    params.start = clamp(w.start);
  }
  if (w.end !== undefined) {
    where.push(`timestamp <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')`);
    params.end = clamp(w.end);
  }
  if (w.metric !== undefined) {
    where.push('metric_name = {metric:String}');
    params.metric = w.metric;
  }
  return { where: where.join(' AND '), params };
}

export interface SampleRow {
  timestamp: string;
  metric_name: string;
  value: number;
  gpu_id: string;
  device: string;
  uuid: string;
  model_name: string;
  hostname: string;
  container: string;
  pod: string;
  namespace: string;
  labels_raw: string;
  labels: Record<string, string>;
  batch_id: string;
  line: number;
}

/** One page of samples in (timestamp, metric_name, batch_id, line) order, strictly after `after`. */
export function telemetryPage(
  client: ClickHouseClient,
  w: Window,
  page: { limit: number; after?: CursorKey },
  signal?: AbortSignal,
): Promise<SampleRow[]> {
  const { where, params } = windowFilter(w);
  let keyset = '';
  if (page.after) {
    // The plain `timestamp >=` lets the primary key skip to the cursor; the tuple decides exactly.
    keyset = ` AND timestamp >= fromUnixTimestamp64Milli({after_ts:Int64}, 'UTC')
      AND (timestamp, metric_name, batch_id, line) >
          (fromUnixTimestamp64Milli({after_ts:Int64}, 'UTC'), {after_metric:String}, {after_batch:String}, {after_line:UInt32})`;
    Object.assign(params, { after_ts: clamp(page.after.ts), after_metric: page.after.metric, after_batch: page.after.batch, after_line: page.after.line });
  }
  return rows<SampleRow>(
    client,
    `SELECT timestamp, metric_name, value, gpu_id, device, uuid, model_name, hostname,
       container, pod, namespace, labels_raw, labels, batch_id, line
     FROM ${T.samples}
     WHERE ${where}${keyset}
     ORDER BY timestamp, metric_name, batch_id, line
     LIMIT {limit:UInt32}`,
    { ...params, limit: page.limit },
    signal,
  );
}

export interface MetricSummaryRow {
  metric_name: string;
  count: number;
  min: number;
  max: number;
  avg: number;
  first_timestamp: string;
  last_timestamp: string;
  last_value: number;
}

export function gpuSummary(client: ClickHouseClient, w: Window, signal?: AbortSignal): Promise<MetricSummaryRow[]> {
  const { where, params } = windowFilter(w);
  return rows<MetricSummaryRow>(
    client,
    `SELECT toString(metric_name) AS metric_name, count() AS count, min(value) AS min, max(value) AS max,
       avg(value) AS avg, min(timestamp) AS first_timestamp, max(timestamp) AS last_timestamp,
       argMax(value, timestamp) AS last_value
     FROM ${T.samples}
     WHERE ${where}
     GROUP BY metric_name ORDER BY metric_name`,
    params,
    signal,
  );
}

export interface MetricStatRow {
  metric_name: string;
  samples: number;
  gpus: number;
  min: number;
  max: number;
  avg: number;
  first_seen: string;
  last_seen: string;
}

export function listMetrics(client: ClickHouseClient, signal?: AbortSignal): Promise<MetricStatRow[]> {
  return rows<MetricStatRow>(
    client,
    `SELECT metric_name, sum(samples) AS samples, uniqMerge(gpus) AS gpus,
       min(min_value) AS min, max(max_value) AS max, sum(sum_value) / sum(samples) AS avg,
       min(first_seen) AS first_seen, max(last_seen) AS last_seen
     FROM ${T.metrics} GROUP BY metric_name ORDER BY metric_name`,
    {},
    signal,
  );
}
