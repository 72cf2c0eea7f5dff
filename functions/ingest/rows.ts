import { DCGM_COLUMNS, dcgmRow, type Sample } from '../../shared/schemas.ts';

// Pure row handling: CSV record (array of strings) → validated sample → one TabSeparated line
// in SAMPLE_INSERT_COLUMNS order, which collect hands to ClickHouse unchanged.

/** For each DCGM column, its index in the file's header (the header was checked beforehand). */
export function columnIndexes(header: readonly string[]): number[] {
  const trimmed = header.map((h) => h.trim());
  return DCGM_COLUMNS.map((c) => trimmed.indexOf(c));
}

export type RowResult = { ok: true; sample: Sample } | { ok: false; reason: string };

export function validateRecord(record: readonly string[], indexes: readonly number[]): RowResult {
  if (record.length !== indexes.length) {
    return { ok: false, reason: `expected ${indexes.length} fields, found ${record.length}` };
  }
  const obj: Record<string, string> = {};
  for (let i = 0; i < DCGM_COLUMNS.length; i++) obj[DCGM_COLUMNS[i]] = record[indexes[i]];
  const parsed = dcgmRow.safeParse(obj);
  if (parsed.success) return { ok: true, sample: parsed.data };
  return { ok: false, reason: parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ') };
}

/**
 * CR and LF characters inside a record's fields. csv-parse's `lines` counts each of them as a
 * line (so a CRLF twice) and stands at a record's last line; physical lines count LF only.
 */
export function fieldBreaks(record: readonly string[]): { cr: number; lf: number } {
  let cr = 0;
  let lf = 0;
  for (const f of record) {
    if (!f.includes('\n') && !f.includes('\r')) continue;
    for (let i = 0; i < f.length; i++) {
      const c = f.charCodeAt(i);
      if (c === 10) lf++;
      else if (c === 13) cr++;
    }
  }
  return { cr, lf };
}

const NEEDS_ESCAPE = /[\t\n\r\\]/;
/** TabSeparated escaping (backslash, tab, newline, carriage return). */
export function tsvEscape(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return s;
  return s.replace(/[\t\n\r\\]/g, (c) => (c === '\t' ? '\\t' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\\\'));
}

let lastMs = NaN;
let lastText = '';
/** Epoch ms → `YYYY-MM-DD hh:mm:ss.mmm` (UTC), the DateTime64(3) text form; cached because rows repeat times. */
export function clickhouseTime(ms: number): string {
  if (ms !== lastMs) {
    const iso = new Date(ms).toISOString();
    lastMs = ms;
    lastText = `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;
  }
  return lastText;
}

export function tsvLine(s: Sample, timestampMs: number, uploadId: string, batchId: string, line: number): string {
  return (
    clickhouseTime(timestampMs) + '\t' +
    tsvEscape(s.metric_name) + '\t' +
    tsvEscape(s.gpu_id) + '\t' +
    tsvEscape(s.device) + '\t' +
    tsvEscape(s.uuid) + '\t' +
    tsvEscape(s.modelName) + '\t' +
    tsvEscape(s.Hostname) + '\t' +
    tsvEscape(s.container) + '\t' +
    tsvEscape(s.pod) + '\t' +
    tsvEscape(s.namespace) + '\t' +
    s.value + '\t' +
    tsvEscape(s.labels_raw) + '\t' +
    uploadId + '\t' +
    batchId + '\t' +
    line + '\n'
  );
}
