import type { ClickHouseClient } from '@clickhouse/client';
import { CLICKHOUSE_TABLES as T, ROLLUP_LEVELS } from '../../shared/names.ts';
import { invalidParameters } from './params.ts';
import { gpuNotFound } from './requests.ts';
import { SERIES_LIMITS, type SeriesQuery } from './schemas.ts';
import { collapsedValues, selectRows } from './sql.ts';

// GET /api/v1/gpus/{uuid}/series: per metric, epoch-aligned UTC buckets of `step` seconds, each
// {t, count, min, max, avg, last} over the GPU's de-duplicated samples. Buckets are whole: the
// first one starts at start_time rounded down to the step, so a bucket holds every sample of
// [t, t + step) and an answer served from a rollup equals the one computed from raw samples.
// Source: the coarsest rollup whose width divides the step (its buckets nest in the step's),
// raw samples otherwise.

/** Nice steps for max_points (seconds); beyond the ladder, whole days. */
export const STEP_LADDER = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400] as const;
const DAY = 86_400;
const DEFAULT_WINDOW_MS = 24 * 3600_000;

export type SeriesSource = (typeof ROLLUP_LEVELS)[number]['table'] | 'raw';

/** Buckets of `stepSeconds` that [startMs, endMs] touches. */
export function bucketCount(startMs: number, endMs: number, stepSeconds: number): number {
  const stepMs = stepSeconds * 1000;
  return Math.floor(endMs / stepMs) - Math.floor(startMs / stepMs) + 1;
}

/** The smallest ladder step (then whole days) giving at most maxPoints buckets. */
export function autoStep(startMs: number, endMs: number, maxPoints: number): number {
  for (const step of STEP_LADDER) if (bucketCount(startMs, endMs, step) <= maxPoints) return step;
  let days = Math.max(1, Math.ceil((endMs - startMs) / (DAY * 1000 * maxPoints)));
  while (bucketCount(startMs, endMs, days * DAY) > maxPoints) days++;
  return days * DAY;
}

export function sourceFor(stepSeconds: number): SeriesSource {
  for (const level of [...ROLLUP_LEVELS].reverse()) if (stepSeconds % level.seconds === 0) return level.table;
  return 'raw';
}

/** 90 → `90s`, 300 → `5m`, 7200 → `2h`, 172800 → `2d`. */
export function formatStep(seconds: number): string {
  if (seconds % DAY === 0) return `${seconds / DAY}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

export interface SeriesRequest {
  uuid: string;
  metrics: string[];
  /** Inclusive window, epoch ms; buckets cover [floor(start, step), floor(end, step) + step). */
  start: number;
  end: number;
  step: number;
  source: SeriesSource;
}

export interface SeriesRow {
  metric: string;
  /** Bucket start, epoch ms. */
  b: number;
  count: number;
  min: number;
  max: number;
  avg: number;
  last: number;
}

/** The buckets of every requested metric, ordered by metric then time (empty ones absent). */
export function seriesRows(client: ClickHouseClient, r: SeriesRequest, signal?: AbortSignal): Promise<SeriesRow[]> {
  const stepMs = r.step * 1000;
  const params = {
    uuid: r.uuid,
    metrics: r.metrics,
    step: r.step,
    lo: Math.floor(r.start / stepMs) * stepMs,
    hi: (Math.floor(r.end / stepMs) + 1) * stepMs,
    max_rows: r.metrics.length * SERIES_LIMITS.maxBuckets,
  };
  const bucket = (time: string) => `toInt64(toUnixTimestamp(toStartOfInterval(${time}, INTERVAL {step:UInt32} SECOND))) * 1000`;
  const range = (time: string) =>
    `${time} >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') AND ${time} < fromUnixTimestamp64Milli({hi:Int64}, 'UTC')`;
  const query =
    r.source === 'raw'
      ? `SELECT toString(metric_name) AS metric, ${bucket('ts')} AS b, count() AS count, min(v) AS min, max(v) AS max,
           avg(v) AS avg, argMax(v, ts) AS last
         FROM (${collapsedValues(`uuid = {uuid:String} AND metric_name IN {metrics:Array(String)} AND ${range('timestamp')}`)})
         GROUP BY metric, b ORDER BY metric, b LIMIT {max_rows:UInt32}`
      : `SELECT toString(metric_name) AS metric, ${bucket('r.t')} AS b, sum(r.count) AS count, min(r.min) AS min, max(r.max) AS max,
           sum(r.sum) / sum(r.count) AS avg, argMax(r.last, r.last_ts) AS last
         FROM ${r.source} AS r FINAL
         WHERE uuid = {uuid:String} AND metric_name IN {metrics:Array(String)} AND ${range('r.t')}
         GROUP BY metric, b ORDER BY metric, b LIMIT {max_rows:UInt32}`;
  return selectRows<SeriesRow>(client, query, params, signal);
}

/** The GPU's last sample time, or undefined for a GPU never seen. */
async function lastSeen(client: ClickHouseClient, uuid: string, signal?: AbortSignal): Promise<number | undefined> {
  const [row] = await selectRows<{ last: number }>(
    client,
    `SELECT toUnixTimestamp64Milli(max(last_seen)) AS last FROM ${T.gpus} WHERE uuid = {uuid:String} HAVING count() > 0`,
    { uuid },
    signal,
  );
  return row ? Number(row.last) : undefined;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The series answer for validated parameters; 404 for an unknown GPU, 400 for too many buckets. */
export async function gpuSeries(client: ClickHouseClient, uuid: string, q: SeriesQuery, signal?: AbortSignal) {
  if (q.step !== undefined && q.max_points !== undefined) {
    throw invalidParameters([{ parameter: 'max_points', in: 'query', message: 'cannot be combined with step' }]);
  }
  const last = await lastSeen(client, uuid, signal);
  if (last === undefined) throw gpuNotFound(uuid);
  const end = q.end_time ?? (q.start_time !== undefined ? Math.max(q.start_time, last) : last);
  const start = q.start_time ?? end - DEFAULT_WINDOW_MS;
  if (start > end) throw invalidParameters([{ parameter: 'start_time', in: 'query', message: `is after end_time (${iso(end)})` }]);
  const step = q.step ?? autoStep(start, end, q.max_points ?? SERIES_LIMITS.defaultMaxPoints);
  if (bucketCount(start, end, step) > SERIES_LIMITS.maxBuckets) {
    throw invalidParameters([
      { parameter: 'step', in: 'query', message: `gives more than ${SERIES_LIMITS.maxBuckets} buckets for this window; use a larger step or a shorter window` },
    ]);
  }
  const metrics = [...new Set(q.metric)];
  const source = sourceFor(step);
  const rows = await seriesRows(client, { uuid, metrics, start, end, step, source }, signal);
  const byMetric = new Map<string, SeriesRow[]>(metrics.map((m) => [m, []]));
  for (const row of rows) byMetric.get(row.metric)?.push(row);
  return {
    uuid,
    start_time: iso(start),
    end_time: iso(end),
    step: formatStep(step),
    step_seconds: step,
    source,
    series: metrics.map((metric) => ({
      metric,
      points: byMetric.get(metric)!.map((p) => ({ t: iso(Number(p.b)), count: Number(p.count), min: p.min, max: p.max, avg: p.avg, last: p.last })),
    })),
  };
}
