import { parseDecimal, parseInstant, textProblem, type TextRule } from '../../shared/sample-rules.ts';
import { DCGM_COLUMNS, DCGM_TEXT_RULES } from '../../shared/schemas.ts';
import type { SampleBatchEncoder } from '../../shared/sample-batch.ts';
import { HAS_CONTROL, HAS_NUL, NON_ASCII, type ScannedPart } from './scan.ts';

// The row rules on scanned fields: the same checks as the zod row schema (shared/schemas.ts
// dcgmRow, with shared/sample-rules.ts), answered from bytes where that is exact and from the very
// same functions on the field's string otherwise. Common values take shortcuts that cannot
// change the outcome: text that is ASCII and within limits has no problem to report; a timestamp
// seen before (same bytes) has the same result; a plain decimal of at most 15 digits is computed
// exactly. A rejected row gets the reason the reference gives (`<column> <problem>`, joined by "; ").

const TIMESTAMP = DCGM_COLUMNS.indexOf('timestamp');
const VALUE = DCGM_COLUMNS.indexOf('value');
/** DCGM text columns in the order the batch encoder takes them (TEXT_COLUMNS). */
const TEXT = Object.keys(DCGM_TEXT_RULES) as (keyof typeof DCGM_TEXT_RULES)[];
const TEXT_INDEX = TEXT.map((c) => DCGM_COLUMNS.indexOf(c));
const TEXT_RULE: TextRule[] = TEXT.map((c) => DCGM_TEXT_RULES[c]);

/** A field's text as csv-parse gives it: UTF-8 decoded, `""` unescaped. */
export function fieldText(b: Buffer, start: number, end: number, escapes: number): string {
  const s = b.toString('utf8', start, end);
  return escapes > 0 ? s.replaceAll('""', '"') : s;
}

/** Exact powers of ten as doubles (10^0 … 10^22). */
const POW10 = Array.from({ length: 23 }, (_, k) => 10 ** k);

/**
 * A plain decimal (`[+-]digits[.digits]`, at most 15 significant digits) computed exactly:
 * both the digits and the power of ten are exact doubles, so one correctly rounded division
 * gives what Number() gives. NaN when the field is anything else (the reference rule decides).
 */
function plainDecimal(b: Buffer, start: number, end: number): number {
  let i = start;
  let negative = false;
  if (i < end && (b[i] === 0x2d || b[i] === 0x2b)) negative = b[i++] === 0x2d;
  let digits = 0;
  let mantissa = 0;
  let fraction = -1;
  for (; i < end; i++) {
    const c = b[i];
    if (c === 0x2e && fraction < 0) fraction = 0;
    else if (c >= 0x30 && c <= 0x39) {
      mantissa = mantissa * 10 + (c - 0x30);
      if (++digits > 15) return NaN;
      if (fraction >= 0) fraction++;
    } else return NaN;
  }
  if (digits === 0) return NaN;
  const v = fraction > 0 ? mantissa / POW10[fraction] : mantissa;
  return negative ? -v : v;
}

/** The last timestamps seen, by their bytes (rows of one scrape share a timestamp). */
class TimestampCache {
  private readonly keys: Uint8Array[] = [];
  private readonly results: (number | string)[] = [];
  private next = 0;

  lookup(b: Buffer, start: number, end: number): number | string {
    const len = end - start;
    for (let k = 0; k < this.keys.length; k++) {
      const key = this.keys[k];
      if (key.length !== len) continue;
      let j = 0;
      while (j < len && key[j] === b[start + j]) j++;
      if (j === len) return this.results[k];
    }
    const result = parseInstant(b.toString('latin1', start, end), 'down');
    const slot = this.next;
    this.next = (this.next + 1) % 8;
    this.keys[slot] = Uint8Array.prototype.slice.call(b, start, end);
    this.results[slot] = result;
    return result;
  }
}

/** Per text column (TEXT order): the byte classes that need a closer look, the limits. */
const TEXT_SUSPECT = Uint8Array.from(TEXT_RULE, (r) => NON_ASCII | HAS_NUL | (r.name ? HAS_CONTROL : 0));
const TEXT_MAX = Int32Array.from(TEXT_RULE, (r) => r.max);
const TEXT_REQUIRED = Uint8Array.from(TEXT_RULE, (r) => (r.required ? 1 : 0));
const LABELS = TEXT.indexOf('labels_raw');

export class FastRows {
  private readonly timestamps = new TimestampCache();
  /** Field position of each text column (TEXT order), of the timestamp and of the value. */
  private readonly textField: Int32Array;
  private readonly timestampField: number;
  private readonly valueField: number;
  private readonly fields: number;
  /** The sample's timestamp (epoch ms) after a successful check(). */
  timestamp = 0;
  value = 0;

  /** @param indexes the field position of each DCGM column (columnIndexes of the header) */
  constructor(indexes: readonly number[]) {
    this.fields = indexes.length;
    this.textField = Int32Array.from(TEXT_INDEX, (c) => indexes[c]);
    this.timestampField = indexes[TIMESTAMP];
    this.valueField = indexes[VALUE];
  }

  /** The problem of text column t of record r, if any. */
  private textProblem(b: Buffer, p: ScannedPart, first: number, t: number): string | undefined {
    const f = first + this.textField[t];
    const escapes = p.escapes[f];
    const length = p.end[f] - p.start[f] - escapes;
    // ASCII within the limits, without NUL (or control characters in a name): nothing to report.
    if ((p.flags[f] & TEXT_SUSPECT[t]) === 0 && length <= TEXT_MAX[t] && (length > 0 || TEXT_REQUIRED[t] === 0)) return undefined;
    const problem = textProblem(fieldText(b, p.start[f], p.end[f], escapes), TEXT_RULE[t]);
    return problem && `${TEXT[t]} ${problem}`;
  }

  /**
   * Checks record r of a scanned part; undefined when it is a valid sample (its timestamp and
   * value are then in `timestamp` and `value`), else the reason.
   */
  check(b: Buffer, p: ScannedPart, r: number): string | undefined {
    const first = p.first[r];
    const count = p.first[r + 1] - first;
    if (count !== this.fields) return `expected ${this.fields} fields, found ${count}`;
    // zod reports every failing column, in schema order: timestamp, the names, value, labels_raw.
    let problems: string[] | undefined;
    let f = first + this.timestampField;
    const plainTime = p.escapes[f] === 0 && (p.flags[f] & NON_ASCII) === 0;
    const t = plainTime ? this.timestamps.lookup(b, p.start[f], p.end[f]) : parseInstant(fieldText(b, p.start[f], p.end[f], p.escapes[f]), 'down');
    if (typeof t === 'string') problems = [`timestamp ${t}`];
    else this.timestamp = t;
    for (let c = 0; c < LABELS; c++) {
      const problem = this.textProblem(b, p, first, c);
      if (problem) (problems ??= []).push(problem);
    }
    f = first + this.valueField;
    let v = p.escapes[f] === 0 ? plainDecimal(b, p.start[f], p.end[f]) : NaN;
    if (Number.isNaN(v)) {
      const parsed = parseDecimal(fieldText(b, p.start[f], p.end[f], p.escapes[f]));
      if (typeof parsed === 'string') (problems ??= []).push(`value ${parsed}`);
      else v = parsed;
    }
    this.value = v;
    const labels = this.textProblem(b, p, first, LABELS);
    if (labels) (problems ??= []).push(labels);
    return problems?.join('; ');
  }

  /** Writes record r (checked) into the batch: the numeric columns, then the text columns. */
  write(b: Buffer, p: ScannedPart, r: number, encoder: SampleBatchEncoder, timestampMs: number, line: number): void {
    encoder.row(timestampMs, this.value, line);
    const first = p.first[r];
    for (let t = 0; t < TEXT.length; t++) {
      const f = first + this.textField[t];
      encoder.textBytes(t, b, p.start[f], p.end[f], p.escapes[f]);
    }
  }
}
