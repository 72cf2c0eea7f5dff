import type { ClickHouseClient, ClickHouseSettings } from '@clickhouse/client';
import { CLICKHOUSE_TABLES as T } from '../../shared/names.ts';
import type { GpuRow, HostRow } from './rows.ts';
import { clamp, rows, SETTINGS } from './sql.ts';
import type { TopBy } from './fleet-schemas.ts';

// Fleet reads. The GPU and host listings read the gpus inventory (one row per GPU after merges)
// with a keyset on the sort key, so a page costs the same on page 1 and page 1,000 and the API
// process only ever holds one page. Exact sample counts come from rollup_1d (FINAL), never from
// samples. Values only travel as bound parameters; identifiers only from CLICKHOUSE_TABLES.

const FLEET_SETTINGS: ClickHouseSettings = { ...SETTINGS, optimize_aggregation_in_order: 1 };

export interface GpuFilters {
  hostname?: string;
  model_name?: string;
  metric?: string;
  seen_after?: number;
  seen_before?: number;
  uuid_prefix?: string;
}

export type InventoryRow = Omit<GpuRow, 'samples'>;

/** One page of the inventory in uuid order, strictly after `after`. */
export function gpuInventoryPage(
  client: ClickHouseClient,
  f: GpuFilters,
  page: { limit: number; after?: string },
  signal?: AbortSignal,
): Promise<InventoryRow[]> {
  const inner = ['uuid > {after:String}'];
  const outer: string[] = [];
  const params: Record<string, unknown> = { after: page.after ?? '', limit: page.limit };
  if (f.uuid_prefix !== undefined) {
    inner.push('startsWith(uuid, {prefix:String})', 'uuid >= {prefix:String}');
    params.prefix = f.uuid_prefix;
  }
  if (f.hostname !== undefined) {
    outer.push('hostname = {hostname:String}');
    params.hostname = f.hostname;
  }
  if (f.model_name !== undefined) {
    outer.push('model_name = {model:String}');
    params.model = f.model_name;
  }
  if (f.metric !== undefined) {
    outer.push('has(metrics, {metric:String})');
    params.metric = f.metric;
  }
  if (f.seen_after !== undefined) {
    outer.push(`last_seen >= fromUnixTimestamp64Milli({seen_after:Int64}, 'UTC')`);
    params.seen_after = clamp(f.seen_after);
  }
  if (f.seen_before !== undefined) {
    outer.push(`first_seen <= fromUnixTimestamp64Milli({seen_before:Int64}, 'UTC')`);
    params.seen_before = clamp(f.seen_before);
  }
  return rows<InventoryRow>(
    client,
    `SELECT uuid, gpu_id, device, model_name, hostname, first_seen, last_seen, metrics FROM (
       SELECT uuid, anyLast(gpu_id) AS gpu_id, anyLast(device) AS device, anyLast(model_name) AS model_name,
         anyLast(hostname) AS hostname, min(first_seen) AS first_seen, max(last_seen) AS last_seen,
         arraySort(groupUniqArrayArray(metrics)) AS metrics
       FROM ${T.gpus} WHERE ${inner.join(' AND ')} GROUP BY uuid)
     ${outer.length ? `WHERE ${outer.join(' AND ')}` : ''}
     ORDER BY uuid LIMIT {limit:UInt32}`,
    params,
    signal,
    FLEET_SETTINGS,
  );
}

/** Exact stored (de-duplicated) samples per GPU, from the daily rollup. */
export async function sampleCounts(client: ClickHouseClient, uuids: string[], signal?: AbortSignal): Promise<Map<string, number>> {
  if (uuids.length === 0) return new Map();
  const found = await rows<{ uuid: string; samples: number }>(
    client,
    `SELECT uuid, sum(count) AS samples FROM ${T.rollup1d} FINAL WHERE uuid IN {uuids:Array(String)} GROUP BY uuid`,
    { uuids },
    signal,
  );
  return new Map(found.map((r) => [r.uuid, r.samples]));
}

/**
 * GPUs whose inventory hostname is the query parameter `{hostname}` (as /gpus filters them): the
 * rollups carry no hostname, so fleet reads over them filter by uuid, their sort key's first column.
 */
export const ON_HOST = `uuid IN (SELECT uuid FROM ${T.gpus} GROUP BY uuid HAVING anyLast(hostname) = {hostname:String})`;

export interface GpuIdentity {
  hostname: string;
  model_name: string;
}

/** The inventory's hostname and model of the given GPUs (what fleet answers over rollups name). */
export async function gpuIdentities(client: ClickHouseClient, uuids: string[], signal?: AbortSignal): Promise<Map<string, GpuIdentity>> {
  if (uuids.length === 0) return new Map();
  const found = await rows<GpuIdentity & { uuid: string }>(
    client,
    `SELECT uuid, anyLast(hostname) AS hostname, anyLast(model_name) AS model_name
     FROM ${T.gpus} WHERE uuid IN {uuids:Array(String)} GROUP BY uuid`,
    { uuids: [...new Set(uuids)] },
    signal,
  );
  return new Map(found.map(({ uuid, ...identity }) => [uuid, identity]));
}

/** Where the inventory has no row for a GPU (not possible once its samples are stored). */
export const UNKNOWN_GPU: GpuIdentity = { hostname: '', model_name: '' };

/** Epoch ms of the fleet's latest sample (the inventory's newest last_seen); undefined when empty. */
export async function fleetLatest(client: ClickHouseClient, signal?: AbortSignal): Promise<number | undefined> {
  const [r] = await rows<{ ms: number; n: number }>(
    client,
    `SELECT toUnixTimestamp64Milli(max(last_seen)) AS ms, count() AS n FROM ${T.gpus}`,
    {},
    signal,
  );
  return r && r.n > 0 ? r.ms : undefined;
}

/** One page of hosts (from the inventory) in hostname order, strictly after `after`. */
export function hostsPage(client: ClickHouseClient, page: { limit: number; after?: string }, signal?: AbortSignal): Promise<HostRow[]> {
  return rows<HostRow>(
    client,
    `SELECT hostname, count() AS gpus, arraySort(groupUniqArray(model_name)) AS models,
       min(first_seen) AS first_seen, max(last_seen) AS last_seen
     FROM (SELECT uuid, anyLast(hostname) AS hostname, anyLast(model_name) AS model_name,
             min(first_seen) AS first_seen, max(last_seen) AS last_seen
           FROM ${T.gpus} GROUP BY uuid)
     WHERE hostname > {after:String}
     GROUP BY hostname ORDER BY hostname LIMIT {limit:UInt32}`,
    { after: page.after ?? '', limit: page.limit },
    signal,
  );
}

// ---------------------------------------------------------------------------------------------
// Top GPUs by a statistic of one metric over a window [start, end).

export type Source = 'rollup_1m' | 'rollup_1h' | 'raw';

const HOUR_MS = 3_600_000;
const MINUTE_MS = 60_000;

/** The coarsest rollup whose buckets tile the window exactly; raw samples otherwise. */
export function sourceFor(start: number, end: number): Source {
  if (start % HOUR_MS === 0 && end % HOUR_MS === 0) return 'rollup_1h';
  if (start % MINUTE_MS === 0 && end % MINUTE_MS === 0) return 'rollup_1m';
  return 'raw';
}

const ROLLUP_STAT: Record<TopBy, string> = {
  avg: 'sum(sum) / sum(count)',
  max: 'max(max)',
  min: 'min(min)',
  last: 'argMax(last, last_ts)',
};
const RAW_STAT: Record<TopBy, string> = {
  avg: 'avg(v)',
  max: 'max(v)',
  min: 'min(v)',
  last: 'argMax(v, timestamp)',
};

export interface TopRow {
  uuid: string;
  hostname: string;
  model_name: string;
  value: number;
  count: number;
}

export interface TopRequest {
  metric: string;
  start: number;
  end: number;
  by: TopBy;
  order: 'desc' | 'asc';
  limit: number;
}

/** The SQL of a top request (also sent straight to ClickHouse by the query benchmark). */
export function topSql(r: TopRequest): { source: Source; query: string; params: Record<string, unknown> } {
  const source = sourceFor(r.start, r.end);
  const direction = r.order === 'asc' ? 'ASC' : 'DESC';
  const params = { metric: r.metric, start: clamp(r.start), end: clamp(r.end), limit: r.limit };
  const window = (col: string) =>
    `${col} >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') AND ${col} < fromUnixTimestamp64Milli({end:Int64}, 'UTC')`;
  if (source !== 'raw') {
    const table = source === 'rollup_1h' ? T.rollup1h : T.rollup1m;
    return {
      source,
      params,
      query: `SELECT uuid, ${ROLLUP_STAT[r.by]} AS value, sum(count) AS count
        FROM ${table} FINAL
        WHERE metric_name = {metric:String} AND ${window('t')}
        GROUP BY uuid ORDER BY value ${direction}, uuid LIMIT {limit:UInt32}`,
    };
  }
  // Raw: duplicates of a sample collapse to the later upload's value (the shared sample identity).
  return {
    source,
    params,
    query: `SELECT uuid, ${RAW_STAT[r.by]} AS value, count() AS count
      FROM (
        SELECT uuid, timestamp, argMax(value, (received_at, batch_id, line)) AS v
        FROM ${T.samples}
        WHERE metric_name = {metric:String} AND ${window('timestamp')}
        GROUP BY uuid, timestamp)
      GROUP BY uuid ORDER BY value ${direction}, uuid LIMIT {limit:UInt32}`,
  };
}

export async function topGpus(client: ClickHouseClient, r: TopRequest, signal?: AbortSignal): Promise<{ source: Source; gpus: TopRow[] }> {
  const { source, query, params } = topSql(r);
  const top = await rows<Omit<TopRow, keyof GpuIdentity>>(client, query, params, signal);
  const identities = await gpuIdentities(client, top.map((g) => g.uuid), signal);
  return { source, gpus: top.map((g) => ({ uuid: g.uuid, ...(identities.get(g.uuid) ?? UNKNOWN_GPU), value: g.value, count: g.count })) };
}
