import { readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { CsvHeaderError, CsvRecordTooLongError, maxQuotedPartBytes, splitCsv, type CsvPart } from '../functions/upload/split.ts';
import { FIXTURE_CSV } from './support/fixtures.ts';

// The upload splitter: header separated, parts cut only between records (never inside a quoted
// field), physical line numbers, byte-exact reassembly, independence from chunk boundaries.

interface Split {
  header: string;
  parts: { index: number; firstLine: number; bytes: number; text: Buffer }[];
}

async function* chunked(body: Buffer, sizes: number | number[]): AsyncGenerator<Buffer> {
  let pos = 0;
  let i = 0;
  while (pos < body.length) {
    const n = typeof sizes === 'number' ? sizes : sizes[i++ % sizes.length];
    yield body.subarray(pos, pos + n);
    pos += n;
  }
}

async function split(body: Buffer | string, partBytes: number, chunks: number | number[] = 64 * 1024): Promise<Split> {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  const r = await splitCsv(chunked(buf, chunks), partBytes);
  const parts: Split['parts'] = [];
  for await (const p of r.parts as AsyncGenerator<CsvPart>) {
    const text = Buffer.from(p.body);
    expect(text.length).toBe(p.bytes);
    parts.push({ index: p.index, firstLine: p.firstLine, bytes: p.bytes, text });
  }
  return { header: r.header, parts };
}

/** The records of a CSV given as a list of raw records, each ending in its newline. */
function csvOf(records: string[]): { body: string; boundaries: number[] } {
  let body = '';
  const boundaries: number[] = [];
  for (const r of records) {
    body += r;
    boundaries.push(Buffer.byteLength(body));
  }
  return { body, boundaries };
}

const HEADER = 'timestamp,metric_name,value,labels_raw';
// Records with quoted newlines (LF and CRLF), doubled quotes, commas and non-ASCII in quotes.
const RECORDS = [
  '2025-07-18T20:42:34Z,m1,1,plain\n',
  '2025-07-18T20:42:34Z,m2,2,"multi\nline\nlabel"\n',
  '2025-07-18T20:42:35Z,m3,3,"he said ""hi""\nthen left"\n',
  '2025-07-18T20:42:35Z,m4,4,"a,b,c"\n',
  '2025-07-18T20:42:36Z,m5,5,"crlf\r\ninside"\r\n',
  '2025-07-18T20:42:36Z,"m\n6",6,"é€\n"\n',
  '2025-07-18T20:42:37Z,m7,7,""""\n',
  '2025-07-18T20:42:37Z,m8,8,"\n\n\n"\n',
  '2025-07-18T20:42:38Z,m9,9,last\n',
];

function linesBefore(buf: Buffer, offset: number): number {
  let n = 0;
  for (let i = 0; i < offset; i++) if (buf[i] === 0x0a) n++;
  return n;
}

/** Checks every invariant of a split of `HEADER\n` + records. */
function checkSplit(s: Split, headerLine: string, records: string[], partBytes: number) {
  const { body, boundaries } = csvOf(records);
  const rest = Buffer.from(body, 'utf8');
  const headerBytes = Buffer.byteLength(headerLine) + 1;
  expect(Buffer.concat(s.parts.map((p) => p.text)).equals(rest)).toBe(true);
  let offset = 0;
  s.parts.forEach((p, i) => {
    expect(p.index).toBe(i);
    // Physical line of the part's first byte in the whole file (header = line 1).
    expect(p.firstLine).toBe(1 + linesBefore(Buffer.from(headerLine + '\n' + body), headerBytes + offset));
    offset += p.bytes;
    // Cut only at record boundaries…
    expect(boundaries).toContain(offset);
    // …and at the first one at or past partBytes (the last part may be smaller).
    const start = offset - p.bytes;
    const firstBoundaryPast = boundaries.find((b) => b - start >= partBytes) ?? rest.length;
    expect(offset).toBe(firstBoundaryPast);
  });
  // Each part parses on its own into the same records as the whole body.
  // (RECORDS mixes LF and CRLF, so both record delimiters are declared.)
  const opts = { relax_column_count: true, record_delimiter: ['\r\n', '\n'] };
  const whole = parse(rest, opts);
  expect(whole).toHaveLength(records.length);
  const byParts = s.parts.flatMap((p) => parse(p.text, opts));
  expect(byParts).toEqual(whole);
}

describe('splitCsv', () => {
  it('separates the header and keeps one part for a small file', async () => {
    const { body } = csvOf(RECORDS);
    const s = await split(`${HEADER}\n${body}`, 1 << 20);
    expect(s.header).toBe(HEADER);
    expect(s.parts).toHaveLength(1);
    expect(s.parts[0].firstLine).toBe(2);
    checkSplit(s, HEADER, RECORDS, 1 << 20);
  });

  it('strips a BOM and a CR from the header', async () => {
    const { body } = csvOf(RECORDS);
    const file = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`${HEADER}\r\n${body}`)]);
    for (const chunks of [1, 2, 3, 7, 1 << 16]) {
      const s = await split(file, 1 << 20, chunks);
      expect(s.header).toBe(HEADER);
      expect(Buffer.concat(s.parts.map((p) => p.text)).toString()).toBe(body);
    }
  });

  it('never cuts inside a quoted field, whatever the part size', async () => {
    for (const partBytes of [1, 2, 5, 17, 40, 64, 100, 1000]) {
      const { body } = csvOf(RECORDS);
      const s = await split(`${HEADER}\n${body}`, partBytes);
      checkSplit(s, HEADER, RECORDS, partBytes);
    }
  });

  it('gives a part per record when partBytes is tiny, with physical first lines', async () => {
    const { body } = csvOf(RECORDS);
    const s = await split(`${HEADER}\n${body}`, 1);
    expect(s.parts).toHaveLength(RECORDS.length);
    expect(s.parts.map((p) => p.text.toString())).toEqual(RECORDS);
    // Lines: header 1; m1 2; m2 3–5; m3 6–7; m4 8; m5 9–10; m6 11–13; m7 14; m8 15–18; m9 19.
    expect(s.parts.map((p) => p.firstLine)).toEqual([2, 3, 6, 8, 9, 11, 14, 15, 19]);
  });

  it('gives the same parts for every chunking of the input', async () => {
    const { body } = csvOf(RECORDS);
    const file = Buffer.from(`\ufeff${HEADER}\r\n${body}`);
    for (const partBytes of [1, 30, 90]) {
      const reference = await split(file, partBytes, file.length);
      const strip = (s: Split) => ({ header: s.header, parts: s.parts.map((p) => ({ ...p, text: p.text.toString('latin1') })) });
      expect(strip(await split(file, partBytes, 1))).toEqual(strip(reference));
      expect(strip(await split(file, partBytes, [1, 2, 3, 5, 8]))).toEqual(strip(reference));
      // Two chunks, cut at every byte position (inside the BOM, the header, quoted fields, CRLFs).
      for (let cut = 1; cut < file.length; cut++) {
        expect(strip(await split(file, partBytes, [cut, file.length])), `cut at ${cut}`).toEqual(strip(reference));
      }
    }
  });

  it('counts lines and quotes four bytes at a time exactly: random records, every alignment and chunking', async () => {
    // Long parts make the splitter count most bytes word by word (countLinesAndQuotes); records
    // dense with quotes, doubled quotes and quoted newlines check the parity and line counts.
    let seed = 7;
    const rand = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const pieces = ['a', '"', '""', '\n', ',', 'é', 'xyz', '"q""\n""q"'];
    const records: string[] = [];
    for (let r = 0; r < 400; r++) {
      let rec = `${r},`;
      const n = 1 + rand(12);
      for (let k = 0; k < n; k++) {
        const q = rand(2) === 0;
        let field = '';
        for (let j = rand(6); j > 0; j--) field += pieces[rand(pieces.length)].replace(/["\n]/g, (c) => (q ? c : 'z'));
        // A quoted field doubles its quotes; an unquoted one has none.
        rec += (k ? ',' : '') + (q ? `"${field.replace(/"/g, '""')}"` : field);
      }
      records.push(rec + (rand(4) === 0 ? '\r\n' : '\n'));
    }
    const { body } = csvOf(records);
    for (const lead of ['', 'x', 'xy', 'xyz']) {
      // A leading header of 1–4 bytes more shifts every later byte's alignment.
      const header = `h${lead}`;
      for (const partBytes of [5, 64, 700, 4096]) {
        for (const chunks of [65_536, 1000, [7, 4093, 13, 8191]]) {
          const s = await split(`${header}\n${body}`, partBytes, chunks);
          checkSplit(s, header, records, partBytes);
        }
      }
    }
  });

  it('keeps a last record without a trailing newline', async () => {
    const s = await split(`${HEADER}\na,b,1,x\nc,d,2,"y\nz"`, 1);
    expect(s.parts.map((p) => p.text.toString())).toEqual(['a,b,1,x\n', 'c,d,2,"y\nz"']);
    expect(s.parts.map((p) => p.firstLine)).toEqual([2, 3]);
  });

  it('drops a trailing part holding only blank lines', async () => {
    // 8 = the record's size: the blank lines after it would form a part of their own.
    const s = await split(`${HEADER}\na,b,1,x\n\n\r\n`, 8);
    expect(s.parts.map((p) => p.text.toString())).toEqual(['a,b,1,x\n']);
  });

  it('handles an empty body and a header-only file', async () => {
    expect(await split('', 100)).toEqual({ header: '', parts: [] });
    expect(await split(`${HEADER}\n`, 100)).toEqual({ header: HEADER, parts: [] });
    expect(await split(`${HEADER}\r\n`, 100)).toEqual({ header: HEADER, parts: [] });
    expect(await split(HEADER, 100)).toEqual({ header: HEADER, parts: [] });
    expect(await split(`${HEADER}\n`, 100, 1)).toEqual({ header: HEADER, parts: [] });
  });

  it('refuses a header longer than maxHeaderBytes', async () => {
    const long = 'x'.repeat(200);
    await expect(splitCsv(chunked(Buffer.from(`${long}\na\n`), 16), 100, 100)).rejects.toThrow(CsvHeaderError);
    const ok = await splitCsv(chunked(Buffer.from(`${long}\na\n`), 16), 100, 1000);
    expect(ok.header).toBe(long);
    // Whatever the chunking: a header arriving in one chunk is measured too.
    await expect(splitCsv(chunked(Buffer.from(`${long}\na\n`), 4096), 100, 100)).rejects.toThrow(CsvHeaderError);
  });

  it('refuses a record without a line end instead of buffering the rest of the file, quoted or not', async () => {
    const read = async (body: Buffer, partBytes: number) => {
      const r = await splitCsv(chunked(body, 1000), partBytes, 1000, 2000);
      for await (const _ of r.parts) void _;
    };
    await expect(read(Buffer.from(`h\n${'x'.repeat(10_000)}`), 100)).rejects.toThrow(/near line 2 is longer than 2000 bytes \(no line end\)/);
    // Inside an open quote the part may grow to maxQuotedPartBytes before it must end at a newline.
    await expect(read(Buffer.from(`h\n"open,${'x'.repeat(maxQuotedPartBytes(100) + 5000)}`), 100)).rejects.toThrow(CsvRecordTooLongError);
    await expect(read(Buffer.from(`h\n"open,${'x\n'.repeat(5000)}`), 100)).resolves.toBeUndefined();
    const fine = await split(`h\n"quoted\nnewline",1\n${'a,1\n'.repeat(500)}`, 100);
    expect(fine.parts.length).toBeGreaterThan(5);
  });

  it('splits the real DCGM export into parts that add up to the file', async () => {
    const file = readFileSync(FIXTURE_CSV);
    const headerEnd = file.indexOf(0x0a);
    const partBytes = 64 * 1024;
    const s = await split(file, partBytes, 4096);
    expect(s.header).toBe(file.subarray(0, headerEnd).toString().replace(/\r$/, ''));
    expect(s.parts.length).toBeGreaterThan(5);
    // Every part but the last reaches partBytes and overshoots by less than one record (< 1 KiB).
    for (const p of s.parts.slice(0, -1)) expect(p.bytes - partBytes).toBeGreaterThanOrEqual(0);
    for (const p of s.parts.slice(0, -1)) expect(p.bytes - partBytes).toBeLessThan(1024);
    expect(Buffer.concat(s.parts.map((p) => p.text)).equals(file.subarray(headerEnd + 1))).toBe(true);
    let line = 2;
    for (const p of s.parts) {
      expect(p.firstLine).toBe(line);
      expect(p.text[p.text.length - 1]).toBe(0x0a);
      line += linesBefore(p.text, p.text.length);
    }
    const rows = s.parts.reduce((n, p) => n + parse(p.text).length, 0);
    expect(rows).toBe(parse(file).length - 1);
  });

  it('bounds a part opened by a stray quote (cut at a newline once it is maxQuotedPartBytes long)', async () => {
    const rows = Array.from({ length: 200_000 }, (_, i) => `2025-07-18T20:42:34Z,metric-${i},${i},plain label\n`);
    rows[10] = '2025-07-18T20:42:34Z,"broken,1,x\n';
    const body = rows.join('');
    const s = await split(`${HEADER}\n${body}`, 4096);
    expect(Buffer.concat(s.parts.map((p) => p.text)).toString()).toBe(body);
    expect(s.parts.length).toBeGreaterThan(2);
    for (const p of s.parts) {
      expect(p.bytes).toBeLessThanOrEqual(maxQuotedPartBytes(4096) + 64);
      expect(p.text.at(-1)).toBe(0x0a);
    }
  });
});
