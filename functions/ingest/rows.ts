import { DCGM_COLUMNS, canonicalColumn, dcgmRow, type Sample } from '../../shared/schemas.ts';

// Pure row handling: CSV record (array of strings) → validated sample (the batch encoding is
// shared/sample-batch.ts).

/** For each DCGM column, its index in the file's header (the header was checked beforehand). */
export function columnIndexes(header: readonly string[]): number[] {
  const names = header.map(canonicalColumn);
  return DCGM_COLUMNS.map((c) => names.indexOf(c));
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

const MALFORMED: Record<string, string> = {
  INVALID_OPENING_QUOTE: 'a quote appears inside an unquoted field',
  CSV_INVALID_CLOSING_QUOTE: 'a quoted field has characters after its closing quote',
  CSV_NON_TRIMABLE_CHAR_AFTER_CLOSING_QUOTE: 'a quoted field has characters after its closing quote',
  CSV_QUOTE_NOT_CLOSED: 'a quoted field is not closed before the end of the file',
  CSV_MAX_RECORD_SIZE: 'the record is too large',
};

/** The reason for a record csv-parse cannot read, from its error code: its messages quote the field. */
export const malformedReason = (code: string | undefined): string => `malformed CSV: ${MALFORMED[code ?? ''] ?? 'unparseable record'}`;
