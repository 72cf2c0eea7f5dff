import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { ClickHouseClient } from '@clickhouse/client';
import { parse } from 'csv-parse/sync';
import { SAMPLE_INSERT_COLUMNS } from '../../shared/migrations.ts';
import { CLICKHOUSE_TABLES } from '../../shared/names.ts';

// The real DCGM export (2,470 rows, 247 GPUs × 10 metrics) loaded straight into ClickHouse,
// independently of ingest/collect, so query tests compare API output with the CSV itself.

export const FIXTURE_CSV = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'dcgm_metrics_20250718_134233.csv');

/** One CSV record, fields as strings exactly as in the file, plus its 1-based file line. */
export interface FixtureRow {
  timestamp: string;
  metric_name: string;
  gpu_id: string;
  device: string;
  uuid: string;
  modelName: string;
  Hostname: string;
  container: string;
  pod: string;
  namespace: string;
  value: string;
  labels_raw: string;
  line: number;
}

let cached: FixtureRow[] | undefined;
export function fixtureRows(): FixtureRow[] {
  if (!cached) {
    const records = parse(readFileSync(FIXTURE_CSV), { columns: true, skip_empty_lines: true }) as Omit<FixtureRow, 'line'>[];
    // The file has no embedded newlines, so record i sits on line i + 2 (line 1 is the header).
    cached = records.map((r, i) => ({ ...r, line: i + 2 }));
  }
  return cached;
}

const tsv = (s: string) => s.replace(/[\\\t\n\r]/g, (c) => (c === '\t' ? '\\t' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\\\'));

/** `YYYY-MM-DD hh:mm:ss.mmm` (UTC), the DateTime64(3) text form. */
export function clickhouseTimestamp(rfc3339: string): string {
  const iso = new Date(Date.parse(rfc3339)).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;
}

/** The fixture as TabSeparated rows in SAMPLE_INSERT_COLUMNS order. */
export function fixtureTsv(opts: { uploadId: string; batchRows?: number; rows?: FixtureRow[]; receivedAt?: string }): string {
  const batchRows = opts.batchRows ?? 500;
  const receivedNow = clickhouseTimestamp(new Date().toISOString());
  return (opts.rows ?? fixtureRows())
    .map((r, i) => {
      const values: Record<(typeof SAMPLE_INSERT_COLUMNS)[number], string> = {
        timestamp: clickhouseTimestamp(r.timestamp),
        metric_name: r.metric_name,
        gpu_id: r.gpu_id,
        device: r.device,
        uuid: r.uuid,
        model_name: r.modelName,
        hostname: r.Hostname,
        container: r.container,
        pod: r.pod,
        namespace: r.namespace,
        value: r.value,
        labels_raw: r.labels_raw,
        upload_id: opts.uploadId,
        batch_id: `${opts.uploadId}.0.${Math.floor(i / batchRows)}`,
        line: String(r.line),
        // Now by default: raw retention (RAW_RETENTION_DAYS) runs on received_at.
        received_at: opts.receivedAt ?? receivedNow,
      };
      return SAMPLE_INSERT_COLUMNS.map((c) => tsv(values[c])).join('\t') + '\n';
    })
    .join('');
}

/** Inserts the fixture rows into `<database>.samples` (the views fill gpus and metric_stats). */
export async function insertFixture(
  client: ClickHouseClient,
  database: string,
  opts: { uploadId: string; batchRows?: number; rows?: FixtureRow[]; receivedAt?: string },
): Promise<number> {
  const text = fixtureTsv(opts);
  await client.insert({
    table: `${database}.${CLICKHOUSE_TABLES.samples}`,
    columns: [...SAMPLE_INSERT_COLUMNS],
    format: 'TabSeparated',
    values: Readable.from([Buffer.from(text)], { objectMode: false }),
  });
  return (opts.rows ?? fixtureRows()).length;
}
