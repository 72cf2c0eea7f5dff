import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import type { PubAck } from 'nats';
import { describe, expect, it } from 'vitest';
import { parseEnv } from '../shared/config.ts';
import { DCGM_COLUMNS, type UploadedPart } from '../shared/schemas.ts';
import { ingestEnv } from '../functions/ingest/config.ts';
import { ingestPart } from '../functions/ingest/index.ts';
import { PartOutput } from '../functions/ingest/output.ts';
import { referenceRows } from '../functions/ingest/reference.ts';
import { columnIndexes } from '../functions/ingest/rows.ts';
import { scanCsv } from '../functions/ingest/scan.ts';
import { splitCsv } from '../functions/upload/split.ts';
import { FIXTURE_CSV, fixtureRows } from './support/fixtures.ts';

// The byte-level path (scanner + checks on scanned fields) against the reference (csv-parse + the
// zod row schema) on a generated corpus of > 100,000 rows mixing valid rows, every value rule
// broken, quoting, embedded delimiters and line breaks, CRLF, unicode, invalid UTF-8, NUL and
// control characters, short and long rows, empty lines, and broken CSV (parts the scanner hands
// to csv-parse). Both must give the same accepted rows (byte-identical batches), rejected lines
// and reasons.

/** Deterministic pseudo-random numbers (mulberry32), so a failure can be reproduced. */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Field = string | Buffer;
const BAD_TIMESTAMPS = ['yesterday', '', '2025-13-01T00:00:00Z', '2025-02-30T00:00:00Z', '2024-02-29T24:00:00Z', '2025-07-18T20:42:34+24:00', '1899-12-31T23:59:59Z', '2300-01-01T00:00:00Z', '2025-07-18T20:42:34', '2025-07-18 20:42:34Z ', ' 2025-07-18T20:42:34Z', '2025-7-18T20:42:34Z', '２０２５-07-18T20:42:34Z'];
const GOOD_TIMESTAMPS = ['2025-07-18T20:42:34Z', '2025-07-18t20:42:34z', '2025-07-18 20:42:34.5+02:00', '2024-02-29T23:59:59.999999999Z', '1900-01-01T00:00:00Z', '2299-12-31T23:59:59.999-00:00', '2025-07-18T20:42:34.1234Z'];
const BAD_VALUES = ['', ' ', 'NaN', 'Infinity', '-Infinity', '0x10', '0b1', '1_000', '1e', '--1', '1.2.3', '1e999', '-1e400', '.', '+', '١٢', 'abc'];
const GOOD_VALUES = ['0', '-0', '42', ' 42 ', '+.5', '7.', '-12.5', '1e3', '1E-9', '123456789012345', '1234567890123456789', '0.1000000000000000055511151231257827', '00042', '3.141592653589793', '-9007199254740993', '1.7976931348623157e308', '5e-324'];
const TEXTS = ['', 'plain', 'with,comma', 'with "quotes"', 'line\nbreak', 'cr\rhere', 'crlf\r\ninside', 'tab\there', 'ünïcødé ✓ 😀', 'nul\0byte', 'ctl\x07bell', 'del\x7f', '\uFFFD', 'back\\slash', ' spaced ', 'x'.repeat(129), 'y'.repeat(300)];

const invalidUtf8 = (s: string) => Buffer.concat([Buffer.from(s), Buffer.from([0xc3]), Buffer.from('x'), Buffer.from([0xff, 0xfe])]);

/** One CSV field as bytes: quoted when it must be (or by chance), quotes doubled. */
function csvField(v: Field, rnd: () => number): Buffer {
  const b = typeof v === 'string' ? Buffer.from(v) : v;
  const needs = b.includes(0x2c) || b.includes(0x22) || b.includes(0x0a) || b.includes(0x0d);
  if (!needs && rnd() < 0.4) return b;
  return Buffer.concat([Buffer.from('"'), Buffer.from(b.toString('latin1').replace(/"/g, '""'), 'latin1'), Buffer.from('"')]);
}

interface Corpus {
  header: string[];
  body: Buffer;
  rows: number;
}

/** A corpus in the fixture's layout (or a reordered header with `hostname`), LF or CRLF. */
function corpus(seed: number, rows: number, opts: { crlf?: boolean; reorder?: boolean; broken?: number } = {}): Corpus {
  const rnd = random(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)];
  const fixture = fixtureRows();
  const order = opts.reorder ? [...DCGM_COLUMNS].sort(() => rnd() - 0.5) : [...DCGM_COLUMNS];
  const header = order.map((c) => (c === 'Hostname' && opts.reorder ? 'hostname' : c));
  const eol = Buffer.from(opts.crlf ? '\r\n' : '\n');
  const out: Buffer[] = [];
  for (let i = 0; i < rows; i++) {
    const base = fixture[i % fixture.length];
    const fields: Record<string, Field> = Object.fromEntries(DCGM_COLUMNS.map((c) => [c, base[c]]));
    const roll = rnd();
    if (roll < 0.55) {
      // valid, with some variation
      if (rnd() < 0.2) fields.timestamp = pick(GOOD_TIMESTAMPS);
      if (rnd() < 0.3) fields.value = pick(GOOD_VALUES);
      else if (rnd() < 0.2) {
        // a decimal of 12 to 20 digits: the exact shortcut must agree with Number() at its edge
        const digits = Array.from({ length: 12 + Math.floor(rnd() * 9) }, () => Math.floor(rnd() * 10)).join('');
        const dot = Math.floor(rnd() * digits.length);
        fields.value = (rnd() < 0.3 ? '-' : '') + digits.slice(0, dot) + '.' + digits.slice(dot);
      }
      if (rnd() < 0.2) fields.labels_raw = pick(['', 'a="1",b="2"', 'multi\nline', 'crlf\r\nlabel', 'tab\tlabel', 'ünï', 'with,comma "q"']);
      if (rnd() < 0.1) fields.pod = pick(['', 'pod-1', 'ünïcødé', 'a,b']);
    } else if (roll < 0.65) fields.timestamp = pick(BAD_TIMESTAMPS);
    else if (roll < 0.72) fields.value = pick(BAD_VALUES);
    else if (roll < 0.85) fields[pick(['metric_name', 'gpu_id', 'device', 'uuid', 'modelName', 'Hostname', 'container', 'pod', 'namespace', 'labels_raw'])] = pick(TEXTS);
    else if (roll < 0.88) fields[pick(['metric_name', 'Hostname', 'labels_raw'])] = invalidUtf8(String(base.metric_name));
    else if (roll < 0.9) {
      // several problems at once
      fields.timestamp = pick(BAD_TIMESTAMPS);
      fields.value = pick(BAD_VALUES);
      fields.uuid = '';
    }
    const shape = rnd();
    // A BOM in the data: csv-parse keeps it as text (bom: false), so the first field must not be quoted.
    const bom = shape >= 0.025 && shape < 0.03;
    const encode = (v: Field, k: number) => (bom && k === 0 ? (typeof v === 'string' ? Buffer.from(v.replace(/[",\r\n]/g, '')) : v) : csvField(v, rnd));
    const columns = shape < 0.01 ? order.slice(0, 1 + Math.floor(rnd() * 10)) : order; // a short row
    let line = Buffer.concat(columns.map((c, k) => Buffer.concat([k ? Buffer.from(',') : Buffer.alloc(0), encode(fields[c], k)])));
    if (shape >= 0.01 && shape < 0.02) line = Buffer.concat([line, Buffer.from(',extra')]); // long row
    else if (shape < 0.025) line = Buffer.alloc(0); // empty line
    else if (bom) line = Buffer.concat([Buffer.from('\uFEFF'), line]);
    else if (shape < 0.03 + (opts.broken ?? 0)) {
      // broken CSV: the scanner hands such parts to csv-parse
      line = Buffer.from(pick(['x"y,unquoted quote', '"closed"then text,1', '\r', 'a,b\rc']) + line.toString('latin1'), 'latin1');
    }
    out.push(line, eol);
  }
  if (rnd() < 0.5) out.pop(); // no line end after the last row
  return { header, body: Buffer.concat(out), rows };
}

const cfg = parseEnv(ingestEnv, { INGEST_BATCH_ROWS: '700', INGEST_MAX_REJECT_REASONS: '10000' });

function part(header: string[], firstLine: number, index: number): UploadedPart {
  return { uploadId: 'diff', part: index, object: 'o', header, firstLine, bytes: 0, restamp: false, receivedAt: Date.UTC(2025, 6, 19) };
}

async function collectBatches(run: (publish: (b: { id: string; body: Uint8Array }) => Promise<PubAck>) => Promise<unknown>) {
  const batches: { id: string; body: Buffer }[] = [];
  const result = await run(async (b) => {
    batches.push({ id: b.id, body: Buffer.from(b.body) });
    return {} as PubAck;
  });
  return { result, batches: batches.sort((a, b) => a.id.localeCompare(b.id)) };
}

/** Runs every part of a corpus both ways; returns how many parts the scanner took. */
async function compare(c: Corpus, partBytes: number): Promise<{ parts: number; scanned: number; accepted: number; rejected: number }> {
  const split = await splitCsv(Readable.from([Buffer.concat([Buffer.from(c.header.join(',') + '\n'), c.body])]), partBytes);
  const indexes = columnIndexes(c.header);
  let parts = 0;
  let scanned = 0;
  let accepted = 0;
  let rejected = 0;
  for await (const p of split.parts) {
    const bytes = Buffer.from(p.body);
    const data = part(c.header, p.firstLine, p.index);
    if (scanCsv(bytes).ok) scanned++;
    parts++;
    const fast = await collectBatches((publish) => ingestPart(cfg, data, Readable.from([bytes]), publish as never));
    const reference = await collectBatches(async (publish) => {
      const out = new PartOutput(cfg, data, publish as never);
      await referenceRows(bytes, indexes, data.firstLine, out);
      return out.end();
    });
    expect(fast.result, `part ${p.index} (first line ${p.firstLine})`).toEqual(reference.result);
    expect(fast.batches.map((b) => b.id)).toEqual(reference.batches.map((b) => b.id));
    fast.batches.forEach((b, i) => expect(b.body.equals(reference.batches[i].body), `batch ${b.id}`).toBe(true));
    const r = fast.result as { accepted: number; rejected: number };
    accepted += r.accepted;
    rejected += r.rejected;
  }
  return { parts, scanned, accepted, rejected };
}

describe('byte-level ingest against csv-parse + zod', () => {
  it('gives identical samples, reject lines and reasons on > 100,000 generated rows', async () => {
    const results = [
      await compare(corpus(1, 50_000), 256 * 1024),
      await compare(corpus(2, 30_000, { crlf: true }), 200 * 1024),
      await compare(corpus(3, 25_000, { reorder: true, broken: 0.0005 }), 128 * 1024),
    ];
    const total = results.reduce((t, r) => ({ parts: t.parts + r.parts, scanned: t.scanned + r.scanned, accepted: t.accepted + r.accepted, rejected: t.rejected + r.rejected }));
    expect(total.accepted + total.rejected).toBeGreaterThan(100_000);
    // Every kind of row is present, and the scanner took every part without broken CSV.
    expect(total.accepted).toBeGreaterThan(50_000);
    expect(total.rejected).toBeGreaterThan(30_000);
    expect(results[0].scanned).toBe(results[0].parts);
    expect(results[1].scanned).toBe(results[1].parts);
    expect(results[2].scanned).toBeLessThan(results[2].parts);
  }, 300_000);

  it('hands broken CSV to csv-parse: quotes inside fields, text after a closing quote, an unclosed quote, bare CRs, mixed line ends', () => {
    const row = fixtureRows()[0];
    const good = DCGM_COLUMNS.map((c) => `"${row[c].replace(/"/g, '""')}"`).join(',');
    for (const broken of ['x"y,1\n', '"a"b,1\n', `${good}\n"unclosed`, 'a\rb\n', `${good}\n${good}\r\n`, `${good}\r\n${good}\n`, `\uFEFF${good}\n`]) {
      expect(scanCsv(Buffer.from(`${good}\n${broken}`)).ok, JSON.stringify(broken.slice(0, 12))).toBe(false);
    }
    for (const fine of [`${good}\n\n${good}`, `${good}\r\n\r\n${good}\r\n`, `"a\r\nb""c",d\n`, `a,,"",b\n`]) {
      expect(scanCsv(Buffer.from(fine)).ok, JSON.stringify(fine.slice(-12))).toBe(true);
    }
  });

  it('takes every part of the bundled DCGM export with the scanner', async () => {
    const header = readFileSync(FIXTURE_CSV, 'utf8').split('\n')[0].split(',');
    const body = readFileSync(FIXTURE_CSV).subarray(readFileSync(FIXTURE_CSV).indexOf(10) + 1);
    const r = await compare({ header, body, rows: fixtureRows().length }, 64 * 1024);
    expect(r.scanned).toBe(r.parts);
    expect(r).toMatchObject({ accepted: fixtureRows().length, rejected: 0 });
  });
});
