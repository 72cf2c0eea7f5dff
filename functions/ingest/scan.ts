// Byte-level RFC 4180 scanner for one CSV part: finds records and field offsets in the bytes
// (no string per field) plus, per field, the byte classes the row rules care about. It accepts
// exactly the well-formed CSV on which csv-parse (the reference, functions/ingest/reference.ts)
// yields the same records: quoted fields with `""` escapes and embedded line breaks, LF or CRLF
// line ends (one kind per part, as csv-parse discovers it from the first line end), empty lines
// skipped. Anything else — a quote inside an unquoted field, text after a closing quote, a quote
// left open at the end, a bare CR, a line end of the other kind — ends the scan with a reason,
// and the part goes to csv-parse, whose handling of broken CSV stays the reference.

import { HIGH_BITS, repeated, zeroByteIn } from '../../shared/byte-words.ts';

const QUOTE = 0x22;
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;

/** Field flags: bytes ≥ 0x80 (not ASCII), a NUL, control characters (0x01–0x1f, 0x7f). */
export const NON_ASCII = 1;
export const HAS_NUL = 2;
export const HAS_CONTROL = 4;
/** Not a flag: the byte ends the run the loop is in (see UNQUOTED and QUOTED). */
const STOP = 0x80;
const CLASS = new Uint8Array(256);
for (let b = 0; b < 256; b++) CLASS[b] = b >= 0x80 ? NON_ASCII : b === 0 ? HAS_NUL : b < 0x20 || b === 0x7f ? HAS_CONTROL : 0;
/** CLASS, plus STOP on the bytes that end an unquoted field (comma, LF, CR) or break it (a quote). */
const UNQUOTED = CLASS.map((k, b) => (b === COMMA || b === LF || b === CR || b === QUOTE ? STOP : k));
/** CLASS, plus STOP on a quote (the only byte a quoted field's loop stops at; LFs are counted after). */
const QUOTED = CLASS.map((k, b) => (b === QUOTE ? STOP : k));

// Four bytes at a time (a little-endian word w): a field's run of plain bytes — printable ASCII
// other than the quote (and the comma, unquoted) — is skipped a word per step; the first word
// with anything else goes through the byte loop. Each test below is exact about whether such a
// byte is in w (though not about which): a byte of the result has its high bit (HIGH_BITS) set.
const QUOTE4 = repeated(QUOTE);
const COMMA4 = repeated(COMMA);
const DEL4 = repeated(0x7f);
const quoteIn = (w: number): number => zeroByteIn(w ^ QUOTE4);
const commaIn = (w: number): number => zeroByteIn(w ^ COMMA4);
/** A byte with a flag: ≥ 0x80 (its own high bit), below 0x20 (LF and CR included), or 0x7f. */
const flagIn = (w: number): number => w | ((w - 0x20202020) & ~w) | zeroByteIn(w ^ DEL4);

/** Records and fields of a part. Field f of record r is `first[r] + f`, while below `first[r + 1]`. */
export interface ScannedPart {
  records: number;
  /** Index of each record's first field; `first[records]` is the number of fields. */
  first: Int32Array;
  /** Line breaks (LF) before each record in the part: its line is the part's first line + this. */
  lineOffset: Int32Array;
  /** Content of each field: bytes [start, end), quotes excluded (`""` pairs still doubled). */
  start: Int32Array;
  end: Int32Array;
  /** `""` pairs inside each quoted field. */
  escapes: Int32Array;
  flags: Uint8Array;
}

export type ScanResult = { ok: true; part: ScannedPart } | { ok: false; reason: string };

/**
 * The scanner's arrays; pass the same one to successive scans to reuse them (a scan's result is
 * valid until the next scan into it). Fresh arrays per part cost a full GC every few parts.
 */
export class ScanScratch {
  first = new Int32Array(1024);
  lineOffset = new Int32Array(1024);
  start = new Int32Array(16_384);
  end = new Int32Array(16_384);
  escapes = new Int32Array(16_384);
  flags = new Uint8Array(16_384);

  static grown<T extends Int32Array | Uint8Array>(a: T): T {
    const next = new (a.constructor as new (n: number) => T)(a.length * 2);
    next.set(a);
    return next;
  }

  /** Doubles the record arrays (the scanner then reads them again). */
  growRecords(): void {
    this.first = ScanScratch.grown(this.first);
    this.lineOffset = ScanScratch.grown(this.lineOffset);
  }

  /** Doubles the field arrays (the scanner then reads them again). */
  growFields(): void {
    this.start = ScanScratch.grown(this.start);
    this.end = ScanScratch.grown(this.end);
    this.escapes = ScanScratch.grown(this.escapes);
    this.flags = ScanScratch.grown(this.flags);
  }
}

const fail = (reason: string, line: number): ScanResult => ({ ok: false, reason: `${reason} (line ${line + 1} of the part)` });
const badLineEnd = (b: Uint8Array, i: number) => (b[i] === CR && b[i + 1] !== LF ? 'a carriage return not followed by a line feed' : 'line ends of two kinds (LF and CRLF)');

/** The kind of line end at i: 1 LF, 2 CRLF, 0 a bare CR. */
const lineEndAt = (b: Uint8Array, i: number): number => (b[i] === LF ? 1 : b[i + 1] === LF ? 2 : 0);

/** LF bytes in b[from, to). */
function linesIn(b: Uint8Array, from: number, to: number): number {
  let lines = 0;
  for (let i = from; i < to; i++) if (b[i] === LF) lines++;
  return lines;
}

// Speed (≈ 1.2 ns per byte, 2.6 before): runs of plain bytes are skipped a word at a time (see
// HIGH_BITS), other bytes cost one load from a table that gives their flags and whether they end the
// loop, the byte loops read one plain Uint8Array (a Buffer argument is viewed as one, so every
// element access sees one kind of array), line breaks inside quoted fields are counted only for
// fields that have a control character, the scratch arrays are locals (read again only after
// they grow), and no closures over the loop variables (V8 would keep them in a heap context,
// which made the byte loops ≈ 2× slower).
export function scanCsv(bytes: Uint8Array, a = new ScanScratch()): ScanResult {
  const b = bytes.constructor === Uint8Array ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  const n = b.length;
  const v = new DataView(b.buffer, b.byteOffset, n);
  let first = a.first;
  let lineOffset = a.lineOffset;
  let start = a.start;
  let end = a.end;
  let escapes = a.escapes;
  let flags = a.flags;
  let r = 0; // records
  let f = 0; // fields
  let line = 0;
  let eol = 0; // line end of the part: 0 not seen yet, 1 LF, 2 CRLF (csv-parse takes the first)
  let i = 0;
  first[0] = 0;
  while (i < n) {
    const c0 = b[i];
    if (c0 === LF || c0 === CR) {
      // The line end of the record before, or an empty line (csv-parse skips it: skip_empty_lines).
      const kind = lineEndAt(b, i);
      if (eol === 0) eol = kind;
      if (kind === 0 || kind !== eol) return fail(badLineEnd(b, i), line);
      line++;
      i += kind;
      continue;
    }
    if (r + 1 >= first.length) {
      a.growRecords();
      first = a.first;
      lineOffset = a.lineOffset;
    }
    first[r] = f;
    lineOffset[r] = line;
    r++;
    // Fields of one record, up to its line end or the end of the part.
    for (;;) {
      if (f >= start.length) {
        a.growFields();
        start = a.start;
        end = a.end;
        escapes = a.escapes;
        flags = a.flags;
      }
      let k = 0; // the field's flags
      let s: number;
      let e: number;
      let pairs = 0;
      let c: number;
      if (b[i] === QUOTE) {
        s = ++i;
        for (;;) {
          while (i + 4 <= n) {
            const w = v.getInt32(i, true);
            if (((quoteIn(w) | flagIn(w)) & HIGH_BITS) !== 0) break;
            i += 4;
          }
          while (i < n) {
            const t = QUOTED[b[i]];
            if (t === STOP) break;
            k |= t;
            i++;
          }
          if (i >= n) return fail('a quoted field is not closed before the end of the part', line + linesIn(b, s, n));
          if (i + 1 < n && b[i + 1] === QUOTE) {
            pairs++;
            i += 2;
            continue;
          }
          break;
        }
        e = i++;
        // An LF is a control character: a field without one has no line break.
        if ((k & HAS_CONTROL) !== 0) line += linesIn(b, s, e);
        c = i < n ? b[i] : -1;
        if (c !== COMMA && c !== LF && c !== CR && c !== -1) return fail('a closing quote followed by text other than a comma or line end', line);
      } else {
        s = i;
        while (i + 4 <= n) {
          const w = v.getInt32(i, true);
          if (((quoteIn(w) | flagIn(w) | commaIn(w)) & HIGH_BITS) !== 0) break;
          i += 4;
        }
        while (i < n) {
          const t = UNQUOTED[b[i]];
          if (t === STOP) break;
          k |= t;
          i++;
        }
        e = i;
        c = i < n ? b[i] : -1;
        if (c === QUOTE) return fail('a quote inside an unquoted field', line);
      }
      start[f] = s;
      end[f] = e;
      escapes[f] = pairs;
      flags[f] = k;
      f++;
      if (c === COMMA) {
        i++;
        continue;
      }
      // The end of the part, or a line end (the outer loop takes it).
      break;
    }
    // The record's end, here rather than after the loop: a store V8 has seen on every scan (a
    // store reached only at the end deoptimized each scan, having no type feedback).
    first[r] = f;
  }
  return scanned(r, a);
}

/** The result of a scan into `a` (its arrays as they are after the scan). */
function scanned(records: number, a: ScanScratch): ScanResult {
  return { ok: true, part: { records, first: a.first, lineOffset: a.lineOffset, start: a.start, end: a.end, escapes: a.escapes, flags: a.flags } };
}
