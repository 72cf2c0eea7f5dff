// Grafana dashboards for the ClickHouse data source (grafana-clickhouse-datasource) and
// Prometheus, generated here so every SQL text exists once: `npm run dashboards` writes
// keda/monitoring/dashboards/*.json (shipped as ConfigMaps the Grafana sidecar loads) and
// test/dashboards.test.ts runs the same SQL against the real schema.
import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { join } from 'node:path';
import { CLICKHOUSE_TABLES as T } from '../../shared/names.ts';

const CH = { type: 'grafana-clickhouse-datasource', uid: '${datasource}' };
const PROM = { type: 'prometheus', uid: '${prometheus}' };

export interface Target {
  refId: string;
  rawSql?: string;
  expr?: string;
  format?: number;
  editorType?: 'sql';
  queryType?: string;
  datasource: typeof CH | typeof PROM;
  legendFormat?: string;
}
export interface Panel {
  id: number;
  type: 'timeseries' | 'stat' | 'table' | 'bargauge';
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource: typeof CH | typeof PROM;
  targets: Target[];
  repeat?: string;
  repeatDirection?: 'h' | 'v';
  maxPerRow?: number;
  fieldConfig?: unknown;
  options?: unknown;
}
export interface Variable {
  name: string;
  label?: string;
  type: 'datasource' | 'query';
  query: string | { rawSql: string };
  datasource?: typeof CH;
  multi?: boolean;
  includeAll?: boolean;
  refresh?: number;
  sort?: number;
  current?: unknown;
  definition?: string;
}
export interface Dashboard {
  uid: string;
  title: string;
  tags: string[];
  timezone: 'utc';
  schemaVersion: number;
  time: { from: string; to: string };
  refresh: string;
  templating: { list: Variable[] };
  panels: Panel[];
}

/** Grafana query format (sqlutil): 0 time series, 1 table. */
const FORMAT = { timeSeries: 0, table: 1 } as const;

const sql = (refId: string, rawSql: string, format: number): Target => ({
  refId,
  datasource: CH,
  editorType: 'sql',
  queryType: format === FORMAT.timeSeries ? 'timeseries' : 'table',
  format,
  rawSql: rawSql.replace(/\n\s+/g, '\n  ').trim(),
});
const prom = (refId: string, expr: string, legendFormat: string): Target => ({ refId, datasource: PROM, expr, legendFormat });

// The rollup level a range reads: raw samples up to 6 h (step ≥ 1 s), rollup_1m up to 14 days,
// rollup_1h up to 180 days, rollup_1d beyond. Every branch is one SELECT of a UNION ALL gated on
// the range length, so ClickHouse only reads the table of the branch that applies.
const RANGE = '(toUnixTimestamp($__toTime) - toUnixTimestamp($__fromTime))';
export const ROLLUP_BRANCHES = [
  { table: T.rollup1m, seconds: 60, when: `${RANGE} > 21600 AND ${RANGE} <= 1209600` },
  { table: T.rollup1h, seconds: 3600, when: `${RANGE} > 1209600 AND ${RANGE} <= 15552000` },
  { table: T.rollup1d, seconds: 86400, when: `${RANGE} > 15552000` },
] as const;
const RAW_WHEN = `${RANGE} <= 21600`;
/** Which table the GPU-detail series reads for a range (exactly one condition holds). */
export const RANGE_GATES = [{ table: T.samples, when: RAW_WHEN }, ...ROLLUP_BRANCHES.map(({ table, when }) => ({ table, when }))];

/**
 * avg/min/max of one metric over time (filter: a WHERE fragment on uuid/hostname/metric_name),
 * from de-duplicated raw samples (the later upload wins) or the rollup that fits the range.
 */
function seriesSql(filter: string): string {
  const rollups = ROLLUP_BRANCHES.map(
    (b) => `SELECT toStartOfInterval(t, INTERVAL greatest($__interval_s, ${b.seconds}) second) AS time,
      sum(sum) / sum(count) AS avg, min(min) AS min, max(max) AS max
    FROM ${b.table} FINAL
    WHERE ${filter} AND $__timeFilter(t) AND ${b.when}
    GROUP BY time`,
  );
  return `SELECT time, avg, min, max FROM (
    SELECT $__timeInterval(timestamp) AS time, avg(value) AS avg, min(value) AS min, max(value) AS max
    FROM (
      SELECT timestamp, argMax(value, (received_at, batch_id, line)) AS value
      FROM ${T.samples}
      WHERE ${filter} AND $__timeFilter_ms(timestamp) AND ${RAW_WHEN}
      GROUP BY uuid, metric_name, timestamp)
    GROUP BY time
    UNION ALL
    ${rollups.join('\n    UNION ALL\n    ')}
  ) ORDER BY time`;
}

const INVENTORY = `(SELECT uuid, anyLast(hostname) AS hostname, anyLast(model_name) AS model_name, max(last_seen) AS last_seen FROM ${T.gpus} GROUP BY uuid)`;
/** The rollups carry no hostname: their rows are filtered to the chosen hosts' GPUs (`$host`) by uuid. */
const ON_HOSTS = `$__conditionalAll(uuid IN (SELECT uuid FROM ${INVENTORY} WHERE hostname IN (\${host:singlequote})), $host)`;

/** One number per bucket across the fleet for a metric, from rollups only (1m/1h/1d by range). */
function fleetSeriesSql(metric: string, agg: 'avg' | 'max'): string {
  const value = agg === 'avg' ? 'sum(sum) / sum(count)' : 'max(max)';
  const branches = [
    { table: T.rollup1m, seconds: 60, when: `${RANGE} <= 1209600` },
    ...ROLLUP_BRANCHES.slice(1),
  ].map(
    (b) => `SELECT toStartOfInterval(t, INTERVAL greatest($__interval_s, ${b.seconds}) second) AS time, ${value} AS ${agg}
    FROM ${b.table} FINAL
    WHERE metric_name = '${metric}' AND ${ON_HOSTS} AND $__timeFilter(t) AND ${b.when}
    GROUP BY time`,
  );
  return `SELECT time, ${agg} FROM (
    ${branches.join('\n    UNION ALL\n    ')}
  ) ORDER BY time`;
}

const dsVar: Variable = { name: 'datasource', label: 'ClickHouse', type: 'datasource', query: 'grafana-clickhouse-datasource' };
const hostVar: Variable = {
  name: 'host',
  type: 'query',
  datasource: CH,
  query: { rawSql: `SELECT DISTINCT hostname FROM ${INVENTORY} ORDER BY hostname LIMIT 10000` },
  definition: 'hosts',
  multi: true,
  includeAll: true,
  refresh: 2,
};

const pos = (x: number, y: number, w: number, h: number) => ({ x, y, w, h });

export function fleetOverview(): Dashboard {
  let id = 0;
  const panel = (p: Omit<Panel, 'id' | 'datasource'>): Panel => ({ id: ++id, datasource: CH, ...p });
  return {
    uid: 'gputel-fleet',
    title: 'GPU telemetry / Fleet overview',
    tags: ['gputel', 'gpu'],
    timezone: 'utc',
    schemaVersion: 39,
    time: { from: 'now-24h', to: 'now' },
    refresh: '1m',
    templating: { list: [dsVar, hostVar] },
    panels: [
      panel({
        type: 'stat',
        title: 'GPUs',
        gridPos: pos(0, 0, 6, 4),
        targets: [sql('A', `SELECT count() AS gpus FROM ${INVENTORY} WHERE $__conditionalAll(hostname IN (\${host:singlequote}), $host)`, FORMAT.table)],
      }),
      panel({
        type: 'stat',
        title: 'Hosts',
        gridPos: pos(6, 0, 6, 4),
        targets: [sql('A', `SELECT uniqExact(hostname) AS hosts FROM ${INVENTORY} WHERE $__conditionalAll(hostname IN (\${host:singlequote}), $host)`, FORMAT.table)],
      }),
      panel({
        type: 'stat',
        title: 'Samples in range',
        gridPos: pos(12, 0, 6, 4),
        targets: [sql('A', `SELECT sum(count) AS samples FROM ${T.rollup1m} FINAL WHERE $__timeFilter(t) AND ${ON_HOSTS}`, FORMAT.table)],
      }),
      panel({
        type: 'stat',
        title: 'GPUs silent for 15 min',
        gridPos: pos(18, 0, 6, 4),
        targets: [sql('A', `SELECT countIf(last_seen < $__toTime - INTERVAL 15 MINUTE) AS silent FROM ${INVENTORY} WHERE last_seen >= $__fromTime AND $__conditionalAll(hostname IN (\${host:singlequote}), $host)`, FORMAT.table)],
      }),
      panel({ type: 'timeseries', title: 'Fleet utilisation (avg %)', gridPos: pos(0, 4, 12, 8), targets: [sql('A', fleetSeriesSql('DCGM_FI_DEV_GPU_UTIL', 'avg'), FORMAT.timeSeries)] }),
      panel({ type: 'timeseries', title: 'Hottest GPU (max °C)', gridPos: pos(12, 4, 12, 8), targets: [sql('A', fleetSeriesSql('DCGM_FI_DEV_GPU_TEMP', 'max'), FORMAT.timeSeries)] }),
      panel({
        type: 'table',
        title: 'Hottest GPUs',
        gridPos: pos(0, 12, 12, 9),
        targets: [
          sql('A', `SELECT uuid, hostname, max_temp_c, avg_temp_c FROM (
              SELECT uuid, max(max) AS max_temp_c, round(sum(sum) / sum(count), 1) AS avg_temp_c
              FROM ${T.rollup1m} FINAL
              WHERE metric_name = 'DCGM_FI_DEV_GPU_TEMP' AND $__timeFilter(t) AND ${ON_HOSTS}
              GROUP BY uuid ORDER BY max_temp_c DESC LIMIT 20) AS hottest
            LEFT JOIN ${INVENTORY} AS inventory USING uuid ORDER BY max_temp_c DESC, uuid`, FORMAT.table),
        ],
      }),
      panel({
        type: 'table',
        title: 'Idle but allocated (util 0 %, memory in use)',
        gridPos: pos(12, 12, 12, 9),
        targets: [
          sql('A', `SELECT uuid, hostname, avg_util, max_fb_used_mib FROM (
              SELECT uuid,
                round(sumIf(sum, metric_name = 'DCGM_FI_DEV_GPU_UTIL') / sumIf(count, metric_name = 'DCGM_FI_DEV_GPU_UTIL'), 1) AS avg_util,
                round(maxIf(max, metric_name = 'DCGM_FI_DEV_FB_USED')) AS max_fb_used_mib
              FROM ${T.rollup1m} FINAL
              WHERE metric_name IN ('DCGM_FI_DEV_GPU_UTIL', 'DCGM_FI_DEV_FB_USED') AND $__timeFilter(t) AND ${ON_HOSTS}
              GROUP BY uuid HAVING avg_util = 0 AND max_fb_used_mib > 64 ORDER BY max_fb_used_mib DESC LIMIT 50) AS idle
            LEFT JOIN ${INVENTORY} AS inventory USING uuid ORDER BY max_fb_used_mib DESC, uuid`, FORMAT.table),
        ],
      }),
      panel({
        type: 'table',
        title: 'GPUs per host',
        gridPos: pos(0, 21, 24, 9),
        targets: [
          sql('A', `SELECT hostname, count() AS gpus, arrayStringConcat(arraySort(groupUniqArray(model_name)), ', ') AS models, max(last_seen) AS last_seen
            FROM ${INVENTORY} WHERE $__conditionalAll(hostname IN (\${host:singlequote}), $host)
            GROUP BY hostname ORDER BY hostname LIMIT 1000`, FORMAT.table),
        ],
      }),
    ],
  };
}

export function gpuDetail(): Dashboard {
  let id = 0;
  const panel = (p: Omit<Panel, 'id' | 'datasource'>): Panel => ({ id: ++id, datasource: CH, ...p });
  const gpuFilter = `uuid = '\${gpu}' AND metric_name = '\${metric}'`;
  return {
    uid: 'gputel-gpu',
    title: 'GPU telemetry / GPU detail',
    tags: ['gputel', 'gpu'],
    timezone: 'utc',
    schemaVersion: 39,
    time: { from: 'now-6h', to: 'now' },
    refresh: '1m',
    templating: {
      list: [
        dsVar,
        { ...hostVar, multi: false, includeAll: false },
        {
          name: 'gpu',
          label: 'GPU',
          type: 'query',
          datasource: CH,
          query: { rawSql: `SELECT uuid FROM ${INVENTORY} WHERE hostname = '\${host}' ORDER BY uuid LIMIT 1000` },
          definition: 'GPUs of the host',
          refresh: 2,
        },
        {
          name: 'metric',
          type: 'query',
          datasource: CH,
          query: { rawSql: `SELECT arrayJoin(metrics) AS metric FROM (SELECT groupUniqArrayArray(metrics) AS metrics FROM ${T.gpus} WHERE uuid = '\${gpu}') ORDER BY metric` },
          definition: 'metrics of the GPU',
          multi: true,
          includeAll: true,
          refresh: 2,
        },
      ],
    },
    panels: [
      panel({
        type: 'table',
        title: 'Latest value per metric',
        gridPos: pos(0, 0, 24, 7),
        targets: [
          sql('A', `SELECT metric_name, argMax(value, (timestamp, received_at, batch_id, line)) AS value, max(timestamp) AS at
            FROM ${T.samples} WHERE uuid = '\${gpu}' AND $__timeFilter_ms(timestamp)
            GROUP BY metric_name ORDER BY metric_name LIMIT 200`, FORMAT.table),
        ],
      }),
      panel({
        type: 'timeseries',
        title: '$metric',
        gridPos: pos(0, 7, 12, 8),
        repeat: 'metric',
        repeatDirection: 'h',
        maxPerRow: 2,
        targets: [sql('A', seriesSql(gpuFilter), FORMAT.timeSeries)],
        fieldConfig: { defaults: { custom: { fillOpacity: 10 } }, overrides: [] },
      }),
    ],
  };
}

export function pipelineHealth(): Dashboard {
  let id = 0;
  const panel = (p: Omit<Panel, 'id' | 'datasource'>): Panel => ({ id: ++id, datasource: PROM, ...p });
  return {
    uid: 'gputel-pipeline',
    title: 'GPU telemetry / Pipeline health',
    tags: ['gputel', 'pipeline'],
    timezone: 'utc',
    schemaVersion: 39,
    time: { from: 'now-3h', to: 'now' },
    refresh: '30s',
    templating: { list: [{ name: 'prometheus', label: 'Prometheus', type: 'datasource', query: 'prometheus' }] },
    panels: [
      panel({
        type: 'timeseries',
        title: 'Rows per second by stage',
        gridPos: pos(0, 0, 12, 8),
        targets: [prom('A', 'sum by (stage, outcome) (rate(gputel_rows_total{namespace="gputel"}[$__rate_interval]))', '{{stage}} {{outcome}}')],
      }),
      panel({
        type: 'timeseries',
        title: 'Consumer lag (KEDA: pending + unacknowledged)',
        gridPos: pos(12, 0, 12, 8),
        targets: [prom('A', 'max by (scaledObject) (keda_scaler_metrics_value{namespace="gputel"})', '{{scaledObject}}')],
      }),
      panel({
        type: 'timeseries',
        title: 'Messages by outcome',
        gridPos: pos(0, 8, 12, 8),
        targets: [prom('A', 'sum by (consumer, outcome) (rate(gputel_messages_total{namespace="gputel"}[$__rate_interval]))', '{{consumer}} {{outcome}}')],
      }),
      panel({
        type: 'stat',
        title: 'Dead letters in range',
        gridPos: pos(12, 8, 6, 8),
        targets: [prom('A', 'sum(increase(gputel_messages_total{namespace="gputel", outcome="dead_letter"}[$__range]))', 'dead letters')],
      }),
      panel({
        type: 'stat',
        title: 'Ingest parts by parser',
        gridPos: pos(18, 8, 6, 8),
        targets: [prom('A', 'sum by (path) (increase(gputel_ingest_parts_total{namespace="gputel"}[$__range]))', '{{path}}')],
      }),
      panel({
        type: 'timeseries',
        title: 'Replicas per function',
        gridPos: pos(0, 16, 12, 8),
        targets: [prom('A', 'count by (container) (up{namespace="gputel"} == 1)', '{{container}}')],
      }),
      panel({
        type: 'timeseries',
        title: 'HTTP p95 latency by route',
        gridPos: pos(12, 16, 12, 8),
        targets: [
          prom('A', 'histogram_quantile(0.95, sum by (le, function, route) (rate(gputel_http_request_duration_seconds_bucket{namespace="gputel"}[$__rate_interval])))', '{{function}} {{route}}'),
        ],
      }),
      panel({
        type: 'timeseries',
        title: 'Remote write samples',
        gridPos: pos(0, 24, 12, 8),
        targets: [
          prom('A', 'sum(rate(gputel_remote_write_samples_received_total{namespace="gputel"}[$__rate_interval]))', 'received'),
          prom('B', 'sum(rate(gputel_remote_write_samples_accepted_total{namespace="gputel"}[$__rate_interval]))', 'accepted'),
          prom('C', 'sum(rate(gputel_remote_write_samples_dropped_total{namespace="gputel"}[$__rate_interval]))', 'dropped'),
        ],
      }),
    ],
  };
}

export const DASHBOARDS = { 'fleet-overview': fleetOverview, 'gpu-detail': gpuDetail, 'pipeline-health': pipelineHealth } as const;
export const DASHBOARDS_YAML = join(import.meta.dirname, '..', '..', 'keda', 'monitoring', 'dashboards.yaml');

/** The ConfigMaps of keda/monitoring/dashboards.yaml (one per dashboard, JSON inside). */
export function dashboardsYaml(): string {
  const docs = Object.entries(DASHBOARDS).map(([name, build]) =>
    stringify({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: `gputel-dashboard-${name}`, labels: { grafana_dashboard: '1', 'app.kubernetes.io/part-of': 'gputel' } },
      data: { [`gputel-${name}.json`]: JSON.stringify(build(), null, 2) + '\n' },
    }, { lineWidth: 0 }),
  );
  return `# Generated by \`npm run dashboards\` (test/local/dashboards.ts); do not edit by hand.\n${docs.join('---\n')}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(DASHBOARDS_YAML, dashboardsYaml());
  console.log(`wrote ${DASHBOARDS_YAML}`);
}
