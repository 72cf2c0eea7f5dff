import type { ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { readFileSync } from 'node:fs';
import { recomputeRollups } from '../shared/rollups.ts';
import '../functions/ingest/index.ts'; // registers gputel_ingest_parts_total
import '../functions/remote-write/metrics.ts';
import { clickhouseClient } from '../shared/clickhouse.ts';
import { registry } from '../shared/metrics.ts';
import { provisionClickHouse } from '../shared/provision.ts';
import { DASHBOARDS, DASHBOARDS_YAML, RANGE_GATES, dashboardsYaml, type Dashboard, type Panel, type Variable } from './local/dashboards.ts';
import { fixtureRows, insertFixture } from './support/fixtures.ts';
import { startClickHouse, type RunningServer } from './support/servers.ts';

// The Grafana dashboards without a Grafana: every ClickHouse panel and variable query has its
// grafana-clickhouse-datasource macros expanded (as the plugin does, for a given range and
// interval) and runs against the real schema holding the bundled sample, with its rollups
// computed by collect's own code. Each panel type gets the columns it needs; the GPU-detail
// panels return the sample's values at every rollup level; the Prometheus panels name only
// metrics the functions register.

const DB = 'dashboards_test';
const GPU = 'GPU-016f5163-a200-f674-2110-97949df1c49a';
const HOST = 'mtv5-dgx1-hgpu-020';
const rows = fixtureRows();

let ch: RunningServer;
let client: ClickHouseClient;

interface Ctx {
  from: number;
  to: number;
  intervalS: number;
  vars: Record<string, string[] | 'all'>;
}

/** Replaces `name(args)` calls of a macro, args split at top-level commas. */
function replaceCall(sql: string, name: string, f: (args: string[]) => string): string {
  for (let i = sql.indexOf(`${name}(`); i !== -1; i = sql.indexOf(`${name}(`)) {
    let depth = 0;
    let j = i + name.length;
    const args: string[] = [];
    let start = j + 1;
    for (; j < sql.length; j++) {
      if (sql[j] === '(') depth++;
      else if (sql[j] === ')' && --depth === 0) break;
      else if (sql[j] === ',' && depth === 1) {
        args.push(sql.slice(start, j).trim());
        start = j + 1;
      }
    }
    args.push(sql.slice(start, j).trim());
    sql = sql.slice(0, i) + f(args) + sql.slice(j + 1);
  }
  return sql;
}

/** The plugin's macros and Grafana's variable interpolation, for one range and interval. */
export function expand(sql: string, c: Ctx): string {
  const s = (ms: number) => Math.floor(ms / 1000);
  sql = replaceCall(sql, '$__conditionalAll', ([cond, v]) => (c.vars[v.replace(/^\$/, '')] === 'all' ? '1=1' : cond));
  sql = sql.replace(/\$\{(\w+)(?::(singlequote))?\}/g, (_m, name: string, fmt?: string) => {
    const v = c.vars[name];
    if (v === undefined || v === 'all') throw new Error(`variable ${name} has no value`);
    return fmt === 'singlequote' ? v.map((x) => `'${x}'`).join(',') : v.join(',');
  });
  sql = replaceCall(sql, '$__timeFilter_ms', ([col]) => `${col} >= fromUnixTimestamp64Milli(${c.from}) AND ${col} <= fromUnixTimestamp64Milli(${c.to})`);
  sql = replaceCall(sql, '$__timeFilter', ([col]) => `${col} >= toDateTime(${s(c.from)}) AND ${col} <= toDateTime(${s(c.to)})`);
  sql = replaceCall(sql, '$__timeInterval', ([col]) => `toStartOfInterval(toDateTime(${col}), INTERVAL ${c.intervalS} second)`);
  sql = sql.replaceAll('$__interval_s', String(c.intervalS)).replaceAll('$__fromTime', `toDateTime(${s(c.from)})`).replaceAll('$__toTime', `toDateTime(${s(c.to)})`);
  if (sql.includes('$')) throw new Error(`unexpanded macro or variable in:\n${sql}`);
  return sql;
}

async function run(sql: string): Promise<{ meta: { name: string; type: string }[]; data: Record<string, unknown>[] }> {
  const rs = await client.query({ query: sql, format: 'JSON', clickhouse_settings: { output_format_json_quote_64bit_integers: 0, date_time_output_format: 'iso' } });
  return (await rs.json()) as unknown as { meta: { name: string; type: string }[]; data: Record<string, unknown>[] };
}

const sqlOf = (p: Panel) => p.targets.map((t) => t.rawSql!).filter(Boolean);
const varSql = (v: Variable) => (typeof v.query === 'string' ? v.query : v.query.rawSql);
const isTime = (type: string) => /^(Nullable\()?DateTime/.test(type);
const isNumber = (type: string) => /^(Nullable\()?(U?Int|Float|Decimal)/.test(type);

/** What each panel type needs from a query, checked on its answer. */
function checkShape(p: Panel, r: Awaited<ReturnType<typeof run>>): void {
  const where = `${p.title} (${p.type})`;
  if (p.type === 'timeseries') {
    expect(isTime(r.meta[0].type), `${where}: first column is the time`).toBe(true);
    expect(r.meta.slice(1).length, where).toBeGreaterThan(0);
    for (const m of r.meta.slice(1)) expect(isNumber(m.type), `${where}: ${m.name} is numeric`).toBe(true);
    const times = r.data.map((d) => String(d[r.meta[0].name]));
    expect([...times].sort(), `${where}: ordered by time`).toEqual(times);
  } else if (p.type === 'stat') {
    expect(r.data, where).toHaveLength(1);
    expect(isNumber(r.meta[0].type), `${where}: a number`).toBe(true);
  } else {
    expect(r.meta.length, where).toBeGreaterThan(0);
  }
}

const FROM = Date.parse('2025-07-18T20:40:00Z');
const TO = Date.parse('2025-07-18T20:50:00Z');
const DAY = 86_400_000;

beforeAll(async () => {
  ch = await startClickHouse();
  const admin = clickhouseClient({ CLICKHOUSE_URL: ch.url, CLICKHOUSE_USER: 'default', CLICKHOUSE_PASSWORD: '', CLICKHOUSE_DATABASE: DB }, { database: null });
  await provisionClickHouse(admin, DB);
  expect(await insertFixture(admin, DB, { uploadId: 'fixture-upload' })).toBe(2470);
  await admin.close();
  client = clickhouseClient({ CLICKHOUSE_URL: ch.url, CLICKHOUSE_USER: 'default', CLICKHOUSE_PASSWORD: '', CLICKHOUSE_DATABASE: DB });
  await recomputeRollups(client, Array.from({ length: 5 }, (_, i) => `fixture-upload.0.${i}`));
}, 120_000);
afterAll(async () => {
  await client?.close();
  await ch?.stop();
});

describe('Grafana dashboards', () => {
  it('ship as ConfigMaps for the Grafana sidecar, identical to what the generator writes', () => {
    expect(readFileSync(DASHBOARDS_YAML, 'utf8'), 'run `npm run dashboards`').toBe(dashboardsYaml());
    const docs = parseAllDocuments(readFileSync(DASHBOARDS_YAML, 'utf8')).map((d) => d.toJS());
    expect(docs.map((d) => d.metadata.labels.grafana_dashboard)).toEqual(['1', '1', '1']);
    const kustomization = parseYaml(readFileSync(new URL('../keda/monitoring/kustomization.yaml', import.meta.url), 'utf8'));
    expect(kustomization.resources).toContain('dashboards.yaml');
    for (const d of docs) {
      const json = JSON.parse(Object.values(d.data as Record<string, string>)[0]) as Dashboard;
      expect(json.uid).toMatch(/^gputel-/);
      expect(json.panels.every((p) => p.targets.length > 0)).toBe(true);
    }
  });

  it('fleet overview: every panel runs on the real schema and counts the sample', async () => {
    const d = DASHBOARDS['fleet-overview']();
    const ctx: Ctx = { from: FROM, to: TO, intervalS: 1, vars: { host: 'all' } };
    const hosts = await run(expand(varSql(d.templating.list.find((v) => v.name === 'host')!), ctx));
    expect(hosts.data.map((h) => h.hostname)).toEqual([...new Set(rows.map((r) => r.Hostname))].sort());
    const answers = new Map<string, Awaited<ReturnType<typeof run>>>();
    for (const p of d.panels) {
      for (const q of sqlOf(p)) {
        const r = await run(expand(q, ctx));
        checkShape(p, r);
        answers.set(p.title, r);
      }
    }
    expect(answers.get('GPUs')!.data[0].gpus).toBe(247);
    expect(answers.get('Hosts')!.data[0].hosts).toBe(new Set(rows.map((r) => r.Hostname)).size);
    expect(answers.get('Samples in range')!.data[0].samples).toBe(2470);
    const util = rows.filter((r) => r.metric_name === 'DCGM_FI_DEV_GPU_UTIL').map((r) => Number(r.value));
    const fleetUtil = answers.get('Fleet utilisation (avg %)')!.data;
    expect(fleetUtil).toHaveLength(1);
    expect(fleetUtil[0].avg as number).toBeCloseTo(util.reduce((a, b) => a + b, 0) / util.length, 9);
    const temps = rows.filter((r) => r.metric_name === 'DCGM_FI_DEV_GPU_TEMP').map((r) => Number(r.value));
    expect(answers.get('Hottest GPUs')!.data[0].max_temp_c).toBe(Math.max(...temps));
    // The rollups carry no hostname: the tables name each GPU's host from the inventory.
    const hostOf = new Map(rows.map((r) => [r.uuid, r.Hostname]));
    for (const g of answers.get('Hottest GPUs')!.data) expect(g.hostname, String(g.uuid)).toBe(hostOf.get(String(g.uuid)));
    expect(answers.get('GPUs per host')!.data.map((h) => h.hostname)).toEqual(hosts.data.map((h) => h.hostname));

    // One host selected: the filter applies.
    const one = await run(expand(sqlOf(d.panels.find((p) => p.title === 'GPUs')!)[0], { ...ctx, vars: { host: [HOST] } }));
    expect(one.data[0].gpus).toBe(new Set(rows.filter((r) => r.Hostname === HOST).map((r) => r.uuid)).size);
    // …on the rollup panels too (by the host's GPUs).
    const onHost = await run(expand(sqlOf(d.panels.find((p) => p.title === 'Samples in range')!)[0], { ...ctx, vars: { host: [HOST] } }));
    expect(onHost.data[0].samples).toBe(rows.filter((r) => r.Hostname === HOST).length);
    const hottestOnHost = await run(expand(sqlOf(d.panels.find((p) => p.title === 'Hottest GPUs')!)[0], { ...ctx, vars: { host: [HOST] } }));
    expect(hottestOnHost.data.length).toBeGreaterThan(0);
    expect(new Set(hottestOnHost.data.map((g) => g.hostname))).toEqual(new Set([HOST]));
  });

  it("GPU detail: variables chain host → GPU → metric, and every metric panel returns the sample's value at each rollup level", async () => {
    const d = DASHBOARDS['gpu-detail']();
    const v = (name: string) => varSql(d.templating.list.find((x) => x.name === name)!);
    const base: Ctx = { from: FROM, to: TO, intervalS: 1, vars: { host: [HOST] } };
    expect((await run(expand(v('gpu'), base))).data.map((r) => r.uuid)).toContain(GPU);
    const mine = rows.filter((r) => r.uuid === GPU);
    const metrics = (await run(expand(v('metric'), { ...base, vars: { gpu: [GPU] } }))).data.map((r) => r.metric);
    expect(metrics).toEqual(mine.map((r) => r.metric_name).sort());

    const latest = d.panels.find((p) => p.type === 'table')!;
    const table = await run(expand(sqlOf(latest)[0], { ...base, vars: { gpu: [GPU] } }));
    checkShape(latest, table);
    expect(Object.fromEntries(table.data.map((r) => [r.metric_name, r.value]))).toEqual(Object.fromEntries(mine.map((r) => [r.metric_name, Number(r.value)])));

    const series = d.panels.find((p) => p.repeat === 'metric')!;
    // Range → interval as Grafana would pick for ~1000 px, and the table the SQL reads: raw, 1m, 1h, 1d.
    const ranges = [
      { name: 'raw (10 min)', table: 'samples', from: FROM, to: TO, intervalS: 1, bucket: 1_000 },
      { name: 'rollup_1m (7 days)', table: 'rollup_1m', from: TO - 7 * DAY, to: TO, intervalS: 600, bucket: 600_000 },
      { name: 'rollup_1h (60 days)', table: 'rollup_1h', from: TO - 60 * DAY, to: TO, intervalS: 3600, bucket: 3_600_000 },
      { name: 'rollup_1d (1 year)', table: 'rollup_1d', from: TO - 365 * DAY, to: TO, intervalS: 86_400, bucket: DAY },
    ];
    for (const range of ranges) {
      // Exactly one branch of the UNION ALL is live for the range: the expected table.
      const gates = await run(expand(`SELECT ${RANGE_GATES.map((g, i) => `(${g.when}) AS g${i}`).join(', ')}`, { ...range, vars: {} }));
      expect(RANGE_GATES.filter((_g, i) => gates.data[0][`g${i}`] === 1).map((g) => g.table), range.name).toEqual([range.table]);
      for (const r of mine) {
        const answer = await run(expand(sqlOf(series)[0], { ...range, vars: { gpu: [GPU], metric: [r.metric_name] } }));
        checkShape(series, answer);
        const at = Math.floor(Date.parse(r.timestamp) / range.bucket) * range.bucket;
        const value = Number(r.value);
        const points = answer.data.map((p) => ({ ...p, time: Date.parse(String(p.time)) }));
        expect(points, `${range.name} ${r.metric_name}`).toEqual([{ time: at, avg: value, min: value, max: value }]);
      }
    }
  });

  it('pipeline health: every PromQL panel reads metrics the functions register (or KEDA/Prometheus own)', async () => {
    const registered = new Set((await registry.getMetricsAsJSON()).flatMap((m) => (String(m.type) === 'histogram' ? [`${m.name}_bucket`, `${m.name}_count`, `${m.name}_sum`] : [m.name])));
    const external = new Set(['keda_scaler_metrics_value', 'up']);
    const d = DASHBOARDS['pipeline-health']();
    const exprs = d.panels.flatMap((p) => p.targets.map((t) => t.expr!));
    expect(exprs.length).toBeGreaterThan(5);
    for (const e of exprs) {
      const names = [...e.matchAll(/\b([a-z_][a-z0-9_]*)\{/g)].map((m) => m[1]);
      expect(names.length, e).toBeGreaterThan(0);
      for (const n of names) expect(registered.has(n) || external.has(n), `${n} in ${e}`).toBe(true);
    }
  });
});
