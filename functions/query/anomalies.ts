import type { ClickHouseClient } from '@clickhouse/client';
import { CLICKHOUSE_TABLES as T } from '../../shared/names.ts';
import type { FlagConfig } from './config.ts';
import type { FlagKind } from './fleet-schemas.ts';
import { gpuIdentities, ON_HOST, UNKNOWN_GPU } from './fleet-sql.ts';
import { clamp, rows } from './sql.ts';

// Health flags, computed in ClickHouse over rollup_1m (minute resolution: every minute bucket
// that overlaps the window counts), so a fleet-wide scan reads one row per GPU, metric and
// minute instead of every sample:
// - thermal: minutes whose mean DCGM_FI_DEV_GPU_TEMP > THERMAL_THRESHOLD_C make up at least
//   THERMAL_MIN_SHARE of the minutes with a temperature.
// - xid: DCGM_FI_DEV_XID_ERRORS is non-zero in some minute; the codes come from the raw samples of
//   the flagged GPUs only.
// - idle_allocated: DCGM_FI_DEV_GPU_UTIL never above 0 in the window while DCGM_FI_DEV_FB_USED
//   exceeds IDLE_MEMORY_MIB or a sample of the GPU names a pod.
// - stale: the window end is more than STALE_FACTOR × the GPU's usual interval (its busiest
//   metric's span / (samples − 1) in the window) after its last sample.

export const FLAG_METRICS = {
  temp: 'DCGM_FI_DEV_GPU_TEMP',
  xid: 'DCGM_FI_DEV_XID_ERRORS',
  util: 'DCGM_FI_DEV_GPU_UTIL',
  fbUsed: 'DCGM_FI_DEV_FB_USED',
} as const;

export type Thresholds = Pick<FlagConfig, 'THERMAL_THRESHOLD_C' | 'THERMAL_MIN_SHARE' | 'IDLE_MEMORY_MIB' | 'STALE_FACTOR'>;

export interface AnomalyRequest {
  start: number;
  end: number;
  kind?: FlagKind;
  hostname?: string;
  /** Only these GPUs (the flags of a /gpus page). */
  uuids?: string[];
  after?: { uuid: string; kind: string };
  limit: number;
}

interface AnomalyRow {
  uuid: string;
  kind: FlagKind;
  first_seen: string;
  last_seen: string;
  temp_minutes: number;
  hot_minutes: number;
  temp_max: number;
  fb_max: number;
  pod: number;
  xid_minutes: number;
  interval_ms: number;
  silent_ms: number;
}

export interface Anomaly {
  uuid: string;
  hostname: string;
  model_name: string;
  kind: FlagKind;
  detail: Record<string, unknown>;
  first_seen: string;
  last_seen: string;
}

/** The SQL of an anomaly request (also sent straight to ClickHouse by the query benchmark). */
export function anomalySql(r: AnomalyRequest, t: Thresholds): { query: string; params: Record<string, unknown> } {
  const where = [
    // Buckets overlapping [start, end): minute starts in (start − 1 min, end).
    `t > fromUnixTimestamp64Milli({start:Int64}, 'UTC') - INTERVAL 1 MINUTE`,
    `t < fromUnixTimestamp64Milli({end:Int64}, 'UTC')`,
  ];
  const params: Record<string, unknown> = {
    start: clamp(r.start),
    end: clamp(r.end),
    limit: r.limit,
    temp: FLAG_METRICS.temp,
    xid: FLAG_METRICS.xid,
    util: FLAG_METRICS.util,
    fb: FLAG_METRICS.fbUsed,
    thermal_c: t.THERMAL_THRESHOLD_C,
    share: t.THERMAL_MIN_SHARE,
    idle_mib: t.IDLE_MEMORY_MIB,
    factor: t.STALE_FACTOR,
    after_uuid: r.after?.uuid ?? '',
    after_kind: r.after?.kind ?? '',
  };
  if (r.hostname !== undefined) {
    where.push(ON_HOST);
    params.hostname = r.hostname;
  }
  if (r.uuids !== undefined) {
    where.push('uuid IN {uuids:Array(String)}');
    params.uuids = r.uuids;
  }
  const kindFilter = r.kind === undefined ? '' : 'AND kind = {kind:String}';
  if (r.kind !== undefined) params.kind = r.kind;
  const rawWindow = `timestamp >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') AND timestamp < fromUnixTimestamp64Milli({end:Int64}, 'UTC')`;
  const query = `
    SELECT uuid, kind, first_seen, last_seen, temp_minutes, hot_minutes, temp_max,
      fb_max, pod, xid_minutes, interval_ms, silent_ms
    FROM (
      SELECT uuid, min(first_t) AS first_seen, max(last_t) AS last_seen,
        sumIf(minutes, metric_name = {temp:String}) AS temp_minutes,
        sumIf(hot, metric_name = {temp:String}) AS hot_minutes,
        maxIf(hi, metric_name = {temp:String}) AS temp_max,
        sumIf(minutes, metric_name = {util:String}) AS util_minutes,
        maxIf(hi, metric_name = {util:String}) AS util_max,
        maxIf(hi, metric_name = {fb:String}) AS fb_max,
        sumIf(nonzero, metric_name = {xid:String}) AS xid_minutes,
        minIf(gap_ms, n >= 2) AS interval_ms,
        toInt64(dateDiff('millisecond', max(last_t), fromUnixTimestamp64Milli({end:Int64}, 'UTC'))) AS silent_ms,
        -- Raw samples are read only for GPUs idle without memory in use, where a pod decides.
        util_minutes > 0 AND util_max <= 0 AND uuid IN (
          SELECT uuid FROM ${T.samples}
          WHERE pod != '' AND ${rawWindow} AND uuid IN (
            SELECT uuid FROM ${T.rollup1m} FINAL WHERE metric_name IN ({util:String}, {fb:String}) AND ${where.join(' AND ')}
            GROUP BY uuid
            HAVING countIf(metric_name = {util:String}) > 0 AND maxIf(max, metric_name = {util:String}) <= 0
              AND maxIf(max, metric_name = {fb:String}) <= {idle_mib:Float64})) AS pod,
        arrayFilter(k -> k != '', [
          if(temp_minutes > 0 AND hot_minutes > 0 AND hot_minutes >= {share:Float64} * temp_minutes, 'thermal', ''),
          if(xid_minutes > 0, 'xid', ''),
          if(util_minutes > 0 AND util_max <= 0 AND (fb_max > {idle_mib:Float64} OR pod), 'idle_allocated', ''),
          if(interval_ms > 0 AND silent_ms > {factor:Float64} * interval_ms, 'stale', '')
        ]) AS kinds
      FROM (
        SELECT uuid, metric_name, count() AS minutes, countIf(sum > {thermal_c:Float64} * count) AS hot, max(max) AS hi,
          countIf(max != 0 OR min != 0) AS nonzero, sum(count) AS n,
          min(t) AS first_t, max(last_ts) AS last_t,
          dateDiff('millisecond', toDateTime64(min(t), 3, 'UTC'), max(last_ts)) / greatest(sum(count) - 1, 1) AS gap_ms
        FROM ${T.rollup1m} FINAL
        WHERE ${where.join(' AND ')}
        GROUP BY uuid, metric_name)
      GROUP BY uuid)
    ARRAY JOIN kinds AS kind
    WHERE (uuid, kind) > ({after_uuid:String}, {after_kind:String}) ${kindFilter}
    ORDER BY uuid, kind
    LIMIT {limit:UInt32}`;
  return { query, params };
}

const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;

function detailOf(row: AnomalyRow, t: Thresholds, codes: Map<string, number[]>): Record<string, unknown> {
  switch (row.kind) {
    case 'thermal':
      return {
        threshold_c: t.THERMAL_THRESHOLD_C,
        min_share: t.THERMAL_MIN_SHARE,
        hot_share: round(row.hot_minutes / row.temp_minutes),
        hot_minutes: row.hot_minutes,
        minutes: row.temp_minutes,
        max_c: row.temp_max,
      };
    case 'xid':
      return { codes: codes.get(row.uuid) ?? [], minutes: row.xid_minutes };
    case 'idle_allocated':
      return { memory_used_mib: row.fb_max, memory_threshold_mib: t.IDLE_MEMORY_MIB, pod_attached: Boolean(row.pod), max_utilization: 0 };
    case 'stale':
      return { silent_seconds: round(row.silent_ms / 1000), usual_interval_seconds: round(row.interval_ms / 1000), factor: t.STALE_FACTOR };
  }
}

/** XID codes seen per GPU in the window (raw samples of the given GPUs only; duplicates collapsed). */
async function xidCodes(client: ClickHouseClient, uuids: string[], r: AnomalyRequest, signal?: AbortSignal): Promise<Map<string, number[]>> {
  if (uuids.length === 0) return new Map();
  const found = await rows<{ uuid: string; codes: number[] }>(
    client,
    `SELECT uuid, arraySort(groupUniqArray(v)) AS codes FROM (
       SELECT uuid, timestamp, argMax(value, (received_at, batch_id, line)) AS v FROM ${T.samples}
       WHERE uuid IN {uuids:Array(String)} AND metric_name = {xid:String}
         AND timestamp >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') AND timestamp < fromUnixTimestamp64Milli({end:Int64}, 'UTC')
       GROUP BY uuid, timestamp)
     WHERE v != 0 GROUP BY uuid`,
    { uuids, xid: FLAG_METRICS.xid, start: clamp(r.start), end: clamp(r.end) },
    signal,
  );
  return new Map(found.map((f) => [f.uuid, f.codes]));
}

function anomalyRows(client: ClickHouseClient, r: AnomalyRequest, t: Thresholds, signal?: AbortSignal): Promise<AnomalyRow[]> {
  const { query, params } = anomalySql(r, t);
  return rows<AnomalyRow>(client, query, params, signal);
}

/** The flag kinds found, without detail, XID codes or identity: what a /gpus page shows per GPU. */
export const flagKinds: (client: ClickHouseClient, r: AnomalyRequest, t: Thresholds, signal?: AbortSignal) => Promise<Pick<AnomalyRow, 'uuid' | 'kind'>[]> =
  anomalyRows;

export async function findAnomalies(client: ClickHouseClient, r: AnomalyRequest, t: Thresholds, signal?: AbortSignal): Promise<Anomaly[]> {
  const found = await anomalyRows(client, r, t, signal);
  const [codes, identities] = await Promise.all([
    xidCodes(client, found.filter((f) => f.kind === 'xid').map((f) => f.uuid), r, signal),
    gpuIdentities(client, found.map((f) => f.uuid), signal),
  ]);
  return found.map((row) => ({
    uuid: row.uuid,
    ...(identities.get(row.uuid) ?? UNKNOWN_GPU),
    kind: row.kind,
    detail: detailOf(row, t, codes),
    first_seen: row.first_seen,
    last_seen: row.last_seen,
  }));
}
