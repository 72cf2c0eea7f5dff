// The value rules of a sample, defined once: ingest (CSV rows), remote write and the query API's
// parameters all apply these, so a string the store accepts is exactly one the API accepts.
// Each check returns the parsed value, or a message saying what is wrong (never echoing the input).

/** DateTime64(3, 'UTC'), the stored type, represents 1900-01-01 … 2299-12-31 (inclusive). */
export const STORE_MIN_MS = Date.UTC(1900, 0, 1);
export const STORE_MAX_MS = Date.UTC(2299, 11, 31, 23, 59, 59, 999);

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;
export const RFC3339_PATTERN = RFC3339.source;

const daysIn = (year: number, month: number) => new Date(Date.UTC(2000 + (year % 400), month, 0)).getUTCDate();

/**
 * RFC 3339 text → epoch milliseconds, or why it is not a valid instant the store can hold.
 * Calendar fields are checked (Date.parse alone rolls Feb 30 over into March). Stored times have
 * millisecond precision: `down` truncates finer fractions (what a stored sample keeps), `up`
 * rounds them up (an inclusive lower bound stays exactly inclusive).
 */
export function parseInstant(text: string, round: 'up' | 'down' = 'down'): number | string {
  const m = RFC3339.exec(text);
  if (!m) return 'must be an RFC 3339 timestamp, e.g. 2025-07-18T20:42:34Z or 2025-07-18T22:42:34.5+02:00';
  const [, y, mo, d, h, mi, s, frac = '', , , oh = '00', om = '00'] = m;
  const year = Number(y);
  const month = Number(mo);
  if (month < 1 || month > 12) return 'has an invalid month';
  if (Number(d) < 1 || Number(d) > daysIn(year, month)) return 'has an invalid day of month';
  if (Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) return 'has an invalid time of day';
  if (Number(oh) > 23 || Number(om) > 59) return 'has an invalid UTC offset';
  let ms = Date.parse(text.slice(0, 10) + 'T' + text.slice(11).toUpperCase());
  if (Number.isNaN(ms)) return 'is not a valid date';
  if (round === 'up' && /[1-9]/.test(frac.slice(3))) ms += 1;
  return storeTimeProblem(ms) ?? ms;
}

/** Why epoch milliseconds (e.g. a Prometheus sample's timestamp) are not a time the store holds. */
export function storeTimeProblem(ms: number): string | undefined {
  if (!Number.isInteger(ms) || ms < STORE_MIN_MS || ms > STORE_MAX_MS) {
    return 'is outside the range the store can hold (1900-01-01T00:00:00Z to 2299-12-31T23:59:59.999Z)';
  }
  return undefined;
}

const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** A finite decimal number (optionally with an exponent); hex, binary, octal, NaN and Infinity are not. */
export function parseDecimal(text: string): number | string {
  const t = text.trim();
  if (t === '') return 'is required';
  if (!DECIMAL.test(t)) return 'is not a decimal number';
  const n = Number(t);
  if (!Number.isFinite(n)) return 'is out of the range of a 64-bit float';
  return n;
}

export interface TextRule {
  max: number;
  required?: boolean;
  /** Names and identifiers (metric, uuid, host, …) must not hold control characters. */
  name?: boolean;
}

/**
 * Why a text field is unacceptable, or undefined. A NUL would become part of an identity (a
 * metric named `X\0` is a new metric); U+FFFD is what bytes that are not UTF-8 decode to, so
 * the field was not valid UTF-8 (or carried the replacement character itself).
 */
export function textProblem(text: string, rule: TextRule): string | undefined {
  if (rule.required && text.length === 0) return 'is required';
  if (text.length > rule.max) return `longer than ${rule.max} characters`;
  if (text.includes('\0')) return 'contains a NUL character';
  if (text.includes('\uFFFD')) return 'is not valid UTF-8 (or contains U+FFFD)';
  // eslint-disable-next-line no-control-regex
  if (rule.name && /[\x01-\x1f\x7f]/.test(text)) return 'contains control characters';
  return undefined;
}
