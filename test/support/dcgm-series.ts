import { readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import type { Label, TimeSeries } from '../../functions/remote-write/proto.ts';
import { canonicalColumn } from '../../shared/schemas.ts';
import { fixtureRows, type FixtureRow } from './fixtures.ts';

// DCGM CSV rows as the Prometheus series they were exported from: labels_raw holds the series'
// labels exactly as dcgm-exporter (plus Prometheus's instance/job) produced them. Used to serve
// dcgm-exporter exposition text to a real Prometheus, and by the remote-write CLI and benchmark.

const LABEL = /([^=,"]+)="((?:[^"\\]|\\.)*)"/g;

/** `key="value",…` → labels (exposition-format escapes undone). */
export function parseLabelsRaw(raw: string): Label[] {
  return [...raw.matchAll(LABEL)].map((m) => ({ name: m[1], value: m[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c)) }));
}

/** A row's labels: its labels_raw, completed from the columns when labels_raw lacks them. */
export function rowLabels(row: Pick<FixtureRow, 'metric_name' | 'uuid' | 'gpu_id' | 'device' | 'modelName' | 'Hostname' | 'container' | 'pod' | 'namespace' | 'labels_raw'>): Label[] {
  const labels = new Map(parseLabelsRaw(row.labels_raw).map((l) => [l.name, l.value]));
  const fromColumns: [string, string][] = [
    ['__name__', row.metric_name], ['UUID', row.uuid], ['gpu', row.gpu_id], ['device', row.device], ['modelName', row.modelName],
    ['Hostname', row.Hostname], ['container', row.container], ['pod', row.pod], ['namespace', row.namespace],
  ];
  for (const [name, value] of fromColumns) if (value && !labels.has(name) && !(name === 'Hostname' && labels.has('hostname'))) labels.set(name, value);
  return [...labels].map(([name, value]) => ({ name, value })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The rows of a DCGM CSV file (header names as in ingest, `hostname` accepted). */
export function csvRows(path: string): FixtureRow[] {
  const records = parse(readFileSync(path), { columns: (h: string[]) => h.map(canonicalColumn), skip_empty_lines: true }) as Omit<FixtureRow, 'line'>[];
  return records.map((r, i) => ({ ...r, line: i + 2 }));
}

/** One TimeSeries per row with one sample: the row's value at `timestampMs` (default: its own time). */
export function rowSeries(rows: FixtureRow[] = fixtureRows(), timestampMs?: (row: FixtureRow) => number): TimeSeries[] {
  return rows.map((r) => ({
    labels: rowLabels(r),
    samples: [{ value: Number(r.value), timestamp: timestampMs ? timestampMs(r) : Date.parse(r.timestamp) }],
  }));
}

const escapeValue = (v: string) => v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));

/**
 * dcgm-exporter's /metrics text for rows (one sample per series, no timestamps: the scraper
 * stamps them). `instance` and `job` stay in the labels; a scrape config with honor_labels keeps
 * them, so the stored labels equal the CSV's labels_raw.
 */
export function expositionText(rows: FixtureRow[] = fixtureRows()): string {
  const byMetric = new Map<string, string[]>();
  for (const r of rows) {
    const labels = rowLabels(r).filter((l) => l.name !== '__name__');
    const line = `${r.metric_name}{${labels.map((l) => `${l.name}="${escapeValue(l.value)}"`).join(',')}} ${r.value}`;
    byMetric.set(r.metric_name, [...(byMetric.get(r.metric_name) ?? []), line]);
  }
  let out = '';
  for (const [metric, lines] of byMetric) out += `# HELP ${metric} DCGM field ${metric}.\n# TYPE ${metric} gauge\n${lines.join('\n')}\n`;
  return out;
}
