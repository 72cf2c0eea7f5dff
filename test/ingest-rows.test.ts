import { Readable } from 'node:stream';
import { parse } from 'csv-parse/sync';
import type { PubAck } from 'nats';
import { describe, expect, it } from 'vitest';
import { parseEnv } from '../shared/config.ts';
import { SAMPLE_INSERT_COLUMNS } from '../shared/migrations.ts';
import { DCGM_COLUMNS, headerProblem, type UploadedPart } from '../shared/schemas.ts';
import { ingestEnv } from '../functions/ingest/config.ts';
import { ingestPart } from '../functions/ingest/index.ts';
import { clickhouseTime, columnIndexes, fieldBreaks, tsvEscape, validateRecord } from '../functions/ingest/rows.ts';
import { splitCsv } from '../functions/upload/split.ts';
import { clickhouseTimestamp, fixtureRows, type FixtureRow } from './support/fixtures.ts';

// Row validation, TabSeparated encoding and ingestPart (parse → validate → batch → publish) with
// an in-memory publish function: counts, physical line numbers and deterministic batch ids.

const IDENTITY = columnIndexes(DCGM_COLUMNS);
const recordOf = (r: FixtureRow) => DCGM_COLUMNS.map((c) => r[c]);
const GOOD = recordOf(fixtureRows()[0]);
const withField = (field: (typeof DCGM_COLUMNS)[number], value: string) => GOOD.map((v, i) => (DCGM_COLUMNS[i] === field ? value : v));

function reasonFor(record: string[]): string {
  const r = validateRecord(record, IDENTITY);
  if (r.ok) throw new Error(`expected a rejection for ${JSON.stringify(record)}`);
  return r.reason;
}

describe('validateRecord', () => {
  it('accepts every row of the real DCGM export with its values', () => {
    const rows = fixtureRows();
    expect(rows.length).toBe(2470);
    for (const row of rows) {
      const r = validateRecord(recordOf(row), IDENTITY);
      if (!r.ok) throw new Error(`line ${row.line} rejected: ${r.reason}`);
      expect(r.sample.timestamp).toBe(Date.parse(row.timestamp));
      expect(r.sample.value).toBe(Number(row.value));
      expect(r.sample.uuid).toBe(row.uuid);
      expect(r.sample.labels_raw).toBe(row.labels_raw);
    }
  });

  it('maps columns by header position, not by file order', () => {
    const header = [...DCGM_COLUMNS].reverse();
    const r = validateRecord([...GOOD].reverse(), columnIndexes(header));
    expect(r.ok && r.sample.uuid).toBe(GOOD[DCGM_COLUMNS.indexOf('uuid')]);
    expect(columnIndexes([' timestamp ', ...DCGM_COLUMNS.slice(1)])[0]).toBe(0);
  });

  it('accepts RFC 3339 variants and numeric forms', () => {
    for (const ts of ['2025-07-18T20:42:34Z', '2025-07-18T20:42:34.123456789Z', '2025-07-18 20:42:34+02:00', '2025-07-18t20:42:34z']) {
      expect(validateRecord(withField('timestamp', ts), IDENTITY).ok, ts).toBe(true);
    }
    for (const v of ['0', '-1.5', '1e3', ' 42 ', '0x10']) {
      expect(validateRecord(withField('value', v), IDENTITY).ok, v).toBe(true);
    }
  });

  it('rejects with a reason that names the field', () => {
    expect(reasonFor(withField('timestamp', 'yesterday'))).toMatch(/^timestamp .*RFC 3339/);
    expect(reasonFor(withField('timestamp', '2025-13-45T99:99:99Z'))).toMatch(/^timestamp /);
    expect(reasonFor(withField('timestamp', ''))).toMatch(/^timestamp /);
    expect(reasonFor(withField('value', 'abc'))).toMatch(/^value .*finite number.*abc/);
    expect(reasonFor(withField('value', 'NaN'))).toMatch(/^value .*finite/);
    expect(reasonFor(withField('value', 'Infinity'))).toMatch(/^value .*finite/);
    expect(reasonFor(withField('value', '-Infinity'))).toMatch(/^value .*finite/);
    expect(reasonFor(withField('value', ''))).toMatch(/^value is required/);
    expect(reasonFor(withField('uuid', ''))).toMatch(/^uuid is required/);
    expect(reasonFor(withField('metric_name', ''))).toMatch(/^metric_name is required/);
    expect(reasonFor(withField('Hostname', 'h'.repeat(256)))).toMatch(/^Hostname longer than 255/);
    // Several problems are all named.
    const both = reasonFor(withField('uuid', '').map((v, i) => (DCGM_COLUMNS[i] === 'value' ? 'x' : v)));
    expect(both).toMatch(/uuid/);
    expect(both).toMatch(/value/);
  });

  it('rejects a wrong field count', () => {
    expect(reasonFor(GOOD.slice(0, 11))).toBe('expected 12 fields, found 11');
    expect(reasonFor([...GOOD, 'extra'])).toBe('expected 12 fields, found 13');
    expect(reasonFor([])).toBe('expected 12 fields, found 0');
  });
});

describe('fieldBreaks', () => {
  it('counts CR and LF characters inside fields', () => {
    expect(fieldBreaks(['a', 'b'])).toEqual({ cr: 0, lf: 0 });
    expect(fieldBreaks(['a\nb', 'c\r\nd', 'e\rf', '\n\n'])).toEqual({ cr: 2, lf: 4 });
    expect(fieldBreaks([])).toEqual({ cr: 0, lf: 0 });
  });
});

describe('tsvEscape and clickhouseTime', () => {
  it('escapes backslash, tab, newline and carriage return only', () => {
    expect(tsvEscape('plain "text", é')).toBe('plain "text", é');
    expect(tsvEscape('a\tb')).toBe('a\\tb');
    expect(tsvEscape('a\nb\r\n')).toBe('a\\nb\\r\\n');
    expect(tsvEscape('C:\\dir')).toBe('C:\\\\dir');
    expect(tsvEscape('\\t')).toBe('\\\\t'); // a literal backslash-t is not a tab
  });

  it('formats epoch milliseconds as DateTime64(3) text in UTC', () => {
    expect(clickhouseTime(0)).toBe('1970-01-01 00:00:00.000');
    const ms = Date.parse('2025-07-18T20:42:34.123Z');
    expect(clickhouseTime(ms)).toBe('2025-07-18 20:42:34.123');
    // The one-entry cache must not leak between different values.
    expect(clickhouseTime(ms + 1)).toBe('2025-07-18 20:42:34.124');
    expect(clickhouseTime(ms)).toBe('2025-07-18 20:42:34.123');
    expect(clickhouseTime(Date.parse('2024-02-29T23:59:59.999+00:00'))).toBe('2024-02-29 23:59:59.999');
    for (const r of fixtureRows().slice(0, 20)) expect(clickhouseTime(Date.parse(r.timestamp))).toBe(clickhouseTimestamp(r.timestamp));
  });
});

describe('headerProblem', () => {
  it('accepts the DCGM header in any order, with spaces around names', () => {
    expect(headerProblem([...DCGM_COLUMNS])).toBeUndefined();
    expect(headerProblem([...DCGM_COLUMNS].reverse())).toBeUndefined();
    expect(headerProblem(DCGM_COLUMNS.map((c) => ` ${c} `))).toBeUndefined();
  });

  it('names missing, unknown and duplicated columns', () => {
    const missing = headerProblem(DCGM_COLUMNS.filter((c) => c !== 'uuid' && c !== 'value'));
    expect(missing).toMatch(/missing column\(s\): uuid, value/);
    expect(missing).not.toMatch(/unknown/);
    const unknown = headerProblem([...DCGM_COLUMNS, 'gpu_temp']);
    expect(unknown).toMatch(/unknown column\(s\): gpu_temp/);
    expect(unknown).not.toMatch(/missing/);
    const dup = headerProblem([...DCGM_COLUMNS, 'pod']);
    expect(dup).toMatch(/duplicated column\(s\): pod/);
    const all = headerProblem(['timestamp', 'timestamp', 'foo']);
    expect(all).toMatch(/missing column\(s\): metric_name/);
    expect(all).toMatch(/unknown column\(s\): foo/);
    expect(all).toMatch(/duplicated column\(s\): timestamp/);
    expect(all).toMatch(/expected: timestamp,metric_name,/);
    expect(headerProblem([])).toMatch(/missing column/);
  });
});

// A file with good and bad rows; quoted fields with embedded newlines come before bad rows so
// that physical line counting is exercised. Line numbers are written next to each record.
const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
function row(fields: Partial<Record<(typeof DCGM_COLUMNS)[number], string>>): string {
  return DCGM_COLUMNS.map((c, i) => q(fields[c] ?? GOOD[i])).join(',') + '\n';
}
const HEADER = DCGM_COLUMNS.join(',') + '\n';
const FILE_LINES: { text: string; good: boolean; line: number; metric: string }[] = [];
{
  let line = 2;
  const add = (good: boolean, metric: string, fields: Parameters<typeof row>[0] = {}) => {
    const text = row({ metric_name: metric, ...fields });
    FILE_LINES.push({ text, good, line, metric });
    line += text.split('\n').length - 1;
  };
  const addRaw = (good: boolean, metric: string, text: string) => {
    FILE_LINES.push({ text, good, line, metric });
    line += text.split('\n').length - 1;
  };
  add(true, 'A'); // 2
  add(true, 'B', { labels_raw: 'k="v"\nsecond line' }); // 3–4
  add(false, 'bad-ts', { timestamp: 'not a time' }); // 5
  add(true, 'C', { container: 'tab\there', pod: 'back\\slash' }); // 6
  addRaw(false, 'blank', '\n'); // 7: skipped, neither accepted nor rejected
  addRaw(false, 'short', '2025-07-18T20:42:34Z,short,0\n'); // 8
  add(false, 'nan', { value: 'NaN' }); // 9
  add(true, 'D', { labels_raw: 'a\n\nb', namespace: 'ns\r\nx' }); // 10–13
  add(false, 'no-uuid', { uuid: '' }); // 14
  add(true, 'E'); // 15
  add(false, 'inf', { value: 'Infinity', labels_raw: 'multi\nline bad row' }); // 16–17
  add(true, 'F', { value: '-12.5' }); // 18
  add(true, 'G'); // 19
}
const BODY = FILE_LINES.map((l) => l.text).join('');
const FILE = HEADER + BODY;
const EXPECTED_REJECT_LINES = FILE_LINES.filter((l) => !l.good && l.metric !== 'blank').map((l) => l.line);
const EXPECTED_GOOD = FILE_LINES.filter((l) => l.good);

interface Published {
  seq: number;
  rows: number;
  body: string;
}

function cfgWith(env: Record<string, string> = {}) {
  return parseEnv(ingestEnv, { INGEST_BATCH_ROWS: '2', INGEST_PUBLISH_WINDOW: '2', ...env });
}

function partData(over: Partial<UploadedPart> = {}): UploadedPart {
  return { uploadId: 'up-1', part: 0, object: 'up-1/0', header: [...DCGM_COLUMNS], firstLine: 2, bytes: Buffer.byteLength(BODY), restamp: false, ...over };
}

async function run(text: string, data: UploadedPart, cfg = cfgWith()) {
  const published: Published[] = [];
  const result = await ingestPart(cfg, data, Readable.from([Buffer.from(text)]), async (seq, body, rows) => {
    // Let publishes complete out of order, as JetStream acks may.
    await new Promise((r) => setTimeout(r, seq % 2 ? 1 : 5));
    published.push({ seq, rows, body: body.toString('utf8') });
    return { stream: 'TELEMETRY', seq: seq + 1, duplicate: false } as PubAck;
  });
  published.sort((a, b) => a.seq - b.seq);
  return { result, published };
}

function tsvRows(published: Published[]) {
  return published.flatMap((p) =>
    p.body
      .split('\n')
      .filter(Boolean)
      .map((l) => Object.fromEntries(l.split('\t').map((v, i) => [SAMPLE_INSERT_COLUMNS[i], v])) as Record<(typeof SAMPLE_INSERT_COLUMNS)[number], string>),
  );
}

describe('ingestPart', () => {
  it('counts accepted and rejected rows and reports physical line numbers', async () => {
    expect(EXPECTED_REJECT_LINES).toEqual([5, 8, 9, 14, 16]);
    const { result } = await run(BODY, partData());
    expect(result).toMatchObject({ part: 0, state: 'done', accepted: EXPECTED_GOOD.length, rejected: 5 });
    expect(result.rejects.map((r) => r.line)).toEqual(EXPECTED_REJECT_LINES);
    const reasons = Object.fromEntries(result.rejects.map((r) => [r.line, r.reason]));
    expect(reasons[5]).toMatch(/^timestamp /);
    expect(reasons[8]).toBe('expected 12 fields, found 3');
    expect(reasons[9]).toMatch(/^value /);
    expect(reasons[14]).toMatch(/^uuid is required/);
    expect(reasons[16]).toMatch(/^value .*Infinity/);
  });

  it('publishes batches of at most INGEST_BATCH_ROWS rows with ids <upload>.<part>.<seq>', async () => {
    const { result, published } = await run(BODY, partData({ uploadId: 'up-7', part: 3 }));
    expect(published.map((p) => p.seq)).toEqual([0, 1, 2, 3]);
    expect(published.map((p) => p.rows)).toEqual([2, 2, 2, 1]);
    expect(result.batches).toBe(4);
    for (const p of published) {
      expect(p.body.endsWith('\n')).toBe(true);
      expect(p.body.split('\n').length - 1).toBe(p.rows);
      for (const r of tsvRows([p])) {
        expect(r.upload_id).toBe('up-7');
        expect(r.batch_id).toBe(`up-7.3.${p.seq}`);
      }
    }
  });

  it('writes TabSeparated lines in SAMPLE_INSERT_COLUMNS order with each record\'s first line', async () => {
    const { published } = await run(BODY, partData());
    const rows = tsvRows(published);
    expect(rows.map((r) => r.metric_name)).toEqual(EXPECTED_GOOD.map((l) => l.metric));
    expect(rows.map((r) => Number(r.line))).toEqual(EXPECTED_GOOD.map((l) => l.line));
    expect(Object.keys(rows[0])).toEqual([...SAMPLE_INSERT_COLUMNS]);
    const byMetric = Object.fromEntries(rows.map((r) => [r.metric_name, r]));
    expect(byMetric.A.timestamp).toBe(clickhouseTimestamp(GOOD[0]));
    expect(byMetric.A.uuid).toBe(GOOD[DCGM_COLUMNS.indexOf('uuid')]);
    expect(byMetric.A.model_name).toBe(GOOD[DCGM_COLUMNS.indexOf('modelName')]);
    expect(byMetric.A.hostname).toBe(GOOD[DCGM_COLUMNS.indexOf('Hostname')]);
    expect(byMetric.A.labels_raw).toBe(tsvEscape(GOOD[DCGM_COLUMNS.indexOf('labels_raw')]));
    expect(byMetric.B.labels_raw).toBe('k="v"\\nsecond line');
    expect(byMetric.C.container).toBe('tab\\there');
    expect(byMetric.C.pod).toBe('back\\\\slash');
    expect(byMetric.D.labels_raw).toBe('a\\n\\nb');
    expect(byMetric.D.namespace).toBe('ns\\r\\nx');
    expect(byMetric.F.value).toBe('-12.5');
  });

  it('is deterministic: a second run publishes the same batches', async () => {
    const a = await run(BODY, partData());
    const b = await run(BODY, partData());
    expect(b.published).toEqual(a.published);
    expect(b.result).toEqual(a.result);
  });

  it('gives the same line numbers when the file is split into parts first', async () => {
    for (const partBytes of [1, 700, 2000]) {
      const split = await splitCsv(Readable.from([Buffer.from(FILE)]), partBytes);
      const header = parse(split.header)[0] as string[];
      const rejectLines: number[] = [];
      const goodLines: number[] = [];
      let accepted = 0;
      for await (const p of split.parts) {
        const text = Buffer.concat(p.chunks).toString('utf8');
        const { result, published } = await run(text, partData({ part: p.index, firstLine: p.firstLine, header }));
        accepted += result.accepted;
        rejectLines.push(...result.rejects.map((r) => r.line));
        goodLines.push(...tsvRows(published).map((r) => Number(r.line)));
        for (const r of tsvRows(published)) expect(r.batch_id.startsWith(`up-1.${p.index}.`)).toBe(true);
      }
      expect(accepted, `partBytes ${partBytes}`).toBe(EXPECTED_GOOD.length);
      expect(rejectLines, `partBytes ${partBytes}`).toEqual(EXPECTED_REJECT_LINES);
      expect(goodLines, `partBytes ${partBytes}`).toEqual(EXPECTED_GOOD.map((l) => l.line));
    }
  });

  it('counts physical (LF) lines in a CRLF file with CRs and CRLFs inside quoted fields', async () => {
    // csv-parse counts a CRLF inside a field as two lines and a lone CR as one; ingest must not.
    const records = [
      row({ metric_name: 'r1', labels_raw: 'one\r\ntwo' }).replace(/\n$/, '\r\n'), // 2–3
      row({ metric_name: 'r2', value: 'bad', pod: 'a\rb' }).replace(/\n$/, '\r\n'), // 4
      row({ metric_name: 'r3', labels_raw: 'x\r\n\r\ny' }).replace(/\n$/, '\r\n'), // 5–7
      row({ metric_name: 'r4', uuid: '' }).replace(/\n$/, '\r\n'), // 8
      row({ metric_name: 'r5' }).replace(/\n$/, '\r\n'), // 9
    ];
    const body = records.join('');
    const { result, published } = await run(body, partData());
    expect(result.accepted).toBe(3);
    expect(result.rejects.map((r) => r.line)).toEqual([4, 8]);
    expect(tsvRows(published).map((r) => [r.metric_name, Number(r.line)])).toEqual([['r1', 2], ['r3', 5], ['r5', 9]]);
    expect(tsvRows(published)[0].labels_raw).toBe('one\\r\\ntwo');
    // And the same numbers when the split puts every record in its own part.
    const split = await splitCsv(Readable.from([Buffer.from(DCGM_COLUMNS.join(',') + '\r\n' + body)]), 1);
    const lines: number[] = [];
    for await (const p of split.parts) {
      const r = await run(Buffer.concat(p.chunks).toString(), partData({ part: p.index, firstLine: p.firstLine }));
      lines.push(...r.result.rejects.map((x) => x.line), ...tsvRows(r.published).map((x) => Number(x.line)));
    }
    expect(lines).toEqual([2, 4, 5, 8, 9]);
  });

  it('reports malformed CSV with a line number and keeps going', async () => {
    const text = row({ metric_name: 'ok1' }) + 'x"y,unquoted quote\n' + row({ metric_name: 'ok2' });
    const { result, published } = await run(text, partData({ firstLine: 100 }));
    expect(result.accepted).toBe(2);
    expect(result.rejected).toBe(1);
    expect(result.rejects[0].line).toBe(101);
    expect(result.rejects[0].reason).toMatch(/^malformed CSV: /);
    expect(tsvRows(published).map((r) => Number(r.line))).toEqual([100, 102]);
  });

  it('keeps exact counts but only INGEST_MAX_REJECT_REASONS reasons', async () => {
    const { result } = await run(BODY, partData(), cfgWith({ INGEST_MAX_REJECT_REASONS: '2' }));
    expect(result.rejected).toBe(5);
    expect(result.rejects.map((r) => r.line)).toEqual([5, 8]);
  });

  it('re-stamps rows with processing time when asked', async () => {
    const before = Date.now();
    const { published } = await run(BODY, partData({ restamp: true }));
    const after = Date.now();
    for (const r of tsvRows(published)) {
      const ms = Date.parse(r.timestamp.replace(' ', 'T') + 'Z');
      expect(ms).toBeGreaterThanOrEqual(before - 1);
      expect(ms).toBeLessThanOrEqual(after + 1);
    }
  });

  it('fails the part when a publish fails (so the event is retried)', async () => {
    let calls = 0;
    const attempt = ingestPart(cfgWith(), partData(), Readable.from([Buffer.from(BODY)]), async (seq) => {
      calls++;
      if (seq === 1) throw new Error('stream full');
      return { stream: 'TELEMETRY', seq: 1, duplicate: false } as PubAck;
    });
    await expect(attempt).rejects.toThrow('stream full');
    expect(calls).toBeGreaterThanOrEqual(2);
  });
});
