import { Readable } from 'node:stream';
import { parse } from 'csv-parse/sync';
import type { PubAck } from 'nats';
import { describe, expect, it } from 'vitest';
import { parseEnv } from '../shared/config.ts';
import { SAMPLE_INSERT_COLUMNS } from '../shared/migrations.ts';
import { DCGM_COLUMNS, headerProblem, type UploadedPart } from '../shared/schemas.ts';
import { ingestEnv } from '../functions/ingest/config.ts';
import { ingestPart } from '../functions/ingest/index.ts';
import { columnIndexes, fieldBreaks, validateRecord } from '../functions/ingest/rows.ts';
import { SampleBatchEncoder, compressBatch } from '../shared/sample-batch.ts';
import { splitCsv } from '../functions/upload/split.ts';
import { fixtureRows, type FixtureRow } from './support/fixtures.ts';
import { decodeSampleBatch, fixtureSamples } from './support/batch.ts';

// Row validation, the batch encoding and ingestPart (scan → validate → batch → publish) with
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
    for (const v of ['0', '-1.5', '1e3', ' 42 ', '+.5', '7.', '1E-9']) {
      expect(validateRecord(withField('value', v), IDENTITY).ok, v).toBe(true);
    }
  });

  it('rejects with a reason that names the field', () => {
    expect(reasonFor(withField('timestamp', 'yesterday'))).toMatch(/^timestamp .*RFC 3339/);
    expect(reasonFor(withField('timestamp', '2025-13-45T99:99:99Z'))).toMatch(/^timestamp /);
    expect(reasonFor(withField('timestamp', ''))).toMatch(/^timestamp /);
    // One rule for values (shared/sample-rules.ts): a finite decimal number, nothing else.
    for (const v of ['abc', 'NaN', 'Infinity', '-Infinity', '0x10', '0b101', '0o17', '1_000', '1e', '--1', '1.2.3']) {
      expect(reasonFor(withField('value', v)), v).toBe('value is not a decimal number');
    }
    expect(reasonFor(withField('value', '1e999'))).toBe('value is out of the range of a 64-bit float');
    // Calendar-valid instants within what DateTime64(3) holds; no silent roll-over.
    expect(reasonFor(withField('timestamp', '2025-02-30T00:00:00Z'))).toBe('timestamp has an invalid day of month');
    expect(reasonFor(withField('timestamp', '2025-04-31T00:00:00Z'))).toBe('timestamp has an invalid day of month');
    expect(reasonFor(withField('timestamp', '2025-07-18T24:00:00Z'))).toBe('timestamp has an invalid time of day');
    expect(reasonFor(withField('timestamp', '1899-12-31T23:59:59Z'))).toMatch(/^timestamp is outside the range the store can hold/);
    expect(reasonFor(withField('timestamp', '2300-01-01T00:00:00Z'))).toMatch(/^timestamp is outside the range/);
    // Encoding: NUL and the replacement character (what non-UTF-8 bytes decode to) are refused.
    expect(reasonFor(withField('metric_name', 'DCGM_FI_DEV_GPU_UTIL\0'))).toBe('metric_name contains a NUL character');
    expect(reasonFor(withField('labels_raw', 'a="\0"'))).toBe('labels_raw contains a NUL character');
    expect(reasonFor(withField('Hostname', 'h\uFFFDst'))).toBe('Hostname is not valid UTF-8 (or contains U+FFFD)');
    expect(reasonFor(withField('uuid', 'GPU-1\t2'))).toBe('uuid contains control characters');
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

describe('SampleBatchEncoder', () => {
  it('writes rows that decode back exactly, whatever the text holds', () => {
    const [{ sample }] = fixtureSamples();
    const texts = ['plain "text", é', 'tab\there', 'a\nb\r\n', 'C:\\dir', '\\t', '', '✓ ünïcødé 😀', 'x'.repeat(300)];
    const e = new SampleBatchEncoder('up-9', 'up-9.1.2', Date.UTC(2025, 6, 19, 1, 2, 3, 4), 2);
    const times = [0, Date.parse('1900-01-01T00:00:00Z'), Date.parse('2299-12-31T23:59:59.999Z'), Date.parse('2025-07-18T20:42:34.123Z')];
    texts.forEach((t, i) => e.add({ ...sample, labels_raw: t, pod: t.slice(0, 255), value: i === 3 ? -0.1 : i * 1e300 }, times[i % times.length], 1000 + i));
    const rows = decodeSampleBatch(e.finish());
    expect(rows).toHaveLength(texts.length);
    rows.forEach((r, i) => {
      expect(r.labels_raw).toBe(texts[i]);
      expect(r.pod).toBe(texts[i].slice(0, 255));
      expect(r.timestamp).toBe(times[i % times.length]);
      expect(r.value).toBe(i === 3 ? -0.1 : i * 1e300);
      expect(r.line).toBe(1000 + i);
      expect(r).toMatchObject({ upload_id: 'up-9', batch_id: 'up-9.1.2', received_at: Date.UTC(2025, 6, 19, 1, 2, 3, 4), uuid: sample.uuid, model_name: sample.modelName, hostname: sample.Hostname });
    });
  });

  it('compresses a batch into one zstd frame that decodes to the same rows, many times smaller', async () => {
    const e = new SampleBatchEncoder('up-9', 'up-9.0.0', 0, 2470);
    for (const { sample, line } of fixtureSamples()) e.add(sample, sample.timestamp, line);
    const block = Buffer.from(e.finish());
    const frame = await compressBatch(block);
    expect([...frame.subarray(0, 4)]).toEqual([0x28, 0xb5, 0x2f, 0xfd]);
    expect(frame.length * 10).toBeLessThan(block.length);
    expect(decodeSampleBatch(frame)).toEqual(decodeSampleBatch(block));
  });

  it('finishes into one reused buffer the same block as finish() gives', () => {
    const e = new SampleBatchEncoder('up-9', 'up-9.0.0', 7, 1);
    const samples = fixtureSamples();
    for (const { sample, line } of samples.slice(0, 50)) e.add(sample, sample.timestamp, line);
    const fresh = e.finish();
    const first = e.finishReused();
    expect(first.equals(fresh)).toBe(true);
    // A smaller batch next: written over the same memory, decoded as itself.
    e.restart('up-9.0.1');
    for (const { sample, line } of samples.slice(50, 53)) e.add(sample, sample.timestamp, line);
    const second = e.finishReused();
    expect(second.buffer).toBe(first.buffer);
    expect(second.byteOffset).toBe(first.byteOffset);
    expect(second.equals(e.finish())).toBe(true);
    expect(decodeSampleBatch(second).map((r) => [r.batch_id, r.line])).toEqual(samples.slice(50, 53).map(({ line }) => ['up-9.0.1', line]));
  });

  it('starts over for the next batch and gives an empty block for no rows', () => {
    const e = new SampleBatchEncoder('up-9', 'up-9.0.0', 0, 1);
    for (const { sample, line } of fixtureSamples().slice(0, 3)) e.add(sample, sample.timestamp, line);
    expect(decodeSampleBatch(e.finish()).map((r) => r.line)).toEqual([2, 3, 4]);
    e.restart('up-9.0.1');
    expect(decodeSampleBatch(e.finish())).toEqual([]);
    const [{ sample }] = fixtureSamples();
    e.add(sample, 5, 6);
    expect(decodeSampleBatch(e.finish())).toMatchObject([{ batch_id: 'up-9.0.1', timestamp: 5, line: 6 }]);
  });
});

describe('headerProblem', () => {
  it('accepts the DCGM header in any order, with spaces around names', () => {
    expect(headerProblem([...DCGM_COLUMNS])).toBeUndefined();
    expect(headerProblem([...DCGM_COLUMNS].reverse())).toBeUndefined();
    expect(headerProblem(DCGM_COLUMNS.map((c) => ` ${c} `))).toBeUndefined();
  });

  it('accepts hostname (newer dcgm-exporter releases) for Hostname, but not both', () => {
    const lower = DCGM_COLUMNS.map((c) => (c === 'Hostname' ? 'hostname' : c));
    expect(headerProblem(lower)).toBeUndefined();
    expect(columnIndexes(lower)[DCGM_COLUMNS.indexOf('Hostname')]).toBe(DCGM_COLUMNS.indexOf('Hostname'));
    expect(headerProblem([...DCGM_COLUMNS, 'hostname'])).toMatch(/duplicated column\(s\): Hostname/);
  });

  it('never echoes a column name that is not printable ASCII', () => {
    const problem = headerProblem([...DCGM_COLUMNS, '\x1f\x8b\b\0garbage\uFFFD']);
    expect(problem).toMatch(/unknown column\(s\): \(a column name of \d+ characters that is not printable ASCII\)/);
    expect(problem).not.toMatch(/garbage/);
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
  add(true, 'C', { labels_raw: 'tab\there', pod: 'back\\slash' }); // 6
  addRaw(false, 'blank', '\n'); // 7: skipped, neither accepted nor rejected
  addRaw(false, 'short', '2025-07-18T20:42:34Z,short,0\n'); // 8
  add(false, 'nan', { value: 'NaN' }); // 9
  add(true, 'D', { labels_raw: 'a\n\nb\r\nx' }); // 10–13
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
  body: Buffer;
}

function cfgWith(env: Record<string, string> = {}) {
  return parseEnv(ingestEnv, { INGEST_BATCH_ROWS: '2', INGEST_PUBLISH_WINDOW: '2', ...env });
}

function partData(over: Partial<UploadedPart> = {}): UploadedPart {
  return { uploadId: 'up-1', part: 0, object: 'up-1/0', header: [...DCGM_COLUMNS], firstLine: 2, bytes: Buffer.byteLength(BODY), restamp: false, receivedAt: Date.UTC(2025, 6, 19), ...over };
}

async function run(text: string, data: UploadedPart, cfg = cfgWith()) {
  const published: Published[] = [];
  const result = await ingestPart(cfg, data, Readable.from([Buffer.from(text)]), async (batch) => {
    const seq = Number(batch.id.split('.').at(-1));
    expect(batch.id).toBe(`${data.uploadId}.${data.part}.${seq}`);
    expect(batch.sourceId).toBe(data.uploadId);
    // Let publishes complete out of order, as JetStream acks may.
    await new Promise((r) => setTimeout(r, seq % 2 ? 1 : 5));
    published.push({ seq, rows: batch.rows, body: Buffer.from(batch.body) });
    return { stream: 'TELEMETRY', seq: seq + 1, duplicate: false } as PubAck;
  });
  published.sort((a, b) => a.seq - b.seq);
  return { result, published };
}

const batchRows = (published: Published[]) => published.flatMap((p) => decodeSampleBatch(p.body));

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
    expect(reasons[16]).toMatch(/^value is not a decimal number/);
  });

  it('publishes batches of at most INGEST_BATCH_ROWS rows with ids <upload>.<part>.<seq>', async () => {
    const { result, published } = await run(BODY, partData({ uploadId: 'up-7', part: 3 }));
    expect(published.map((p) => p.seq)).toEqual([0, 1, 2, 3]);
    expect(published.map((p) => p.rows)).toEqual([2, 2, 2, 1]);
    expect(result.batches).toBe(4);
    for (const p of published) {
      expect(batchRows([p])).toHaveLength(p.rows);
      for (const r of batchRows([p])) {
        expect(r.upload_id).toBe('up-7');
        expect(r.batch_id).toBe(`up-7.3.${p.seq}`);
      }
    }
  });

  it('writes rows in SAMPLE_INSERT_COLUMNS order with each record\'s first line', async () => {
    const { published } = await run(BODY, partData());
    const rows = batchRows(published);
    expect(rows.map((r) => r.metric_name)).toEqual(EXPECTED_GOOD.map((l) => l.metric));
    expect(rows.map((r) => Number(r.line))).toEqual(EXPECTED_GOOD.map((l) => l.line));
    expect(Object.keys(rows[0])).toEqual([...SAMPLE_INSERT_COLUMNS]);
    const byMetric = Object.fromEntries(rows.map((r) => [r.metric_name, r]));
    expect(byMetric.A.timestamp).toBe(Date.parse(GOOD[0]));
    expect(byMetric.A.uuid).toBe(GOOD[DCGM_COLUMNS.indexOf('uuid')]);
    expect(byMetric.A.model_name).toBe(GOOD[DCGM_COLUMNS.indexOf('modelName')]);
    expect(byMetric.A.hostname).toBe(GOOD[DCGM_COLUMNS.indexOf('Hostname')]);
    expect(byMetric.A.labels_raw).toBe(GOOD[DCGM_COLUMNS.indexOf('labels_raw')]);
    expect(byMetric.B.labels_raw).toBe('k="v"\nsecond line');
    expect(byMetric.C.labels_raw).toBe('tab\there');
    expect(byMetric.C.pod).toBe('back\\slash');
    expect(byMetric.D.labels_raw).toBe('a\n\nb\r\nx');
    expect(byMetric.F.value).toBe(-12.5);
    expect(byMetric.A.received_at).toBe(Date.UTC(2025, 6, 19));
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
        const text = p.body.toString('utf8');
        const { result, published } = await run(text, partData({ part: p.index, firstLine: p.firstLine, header }));
        accepted += result.accepted;
        rejectLines.push(...result.rejects.map((r) => r.line));
        goodLines.push(...batchRows(published).map((r) => Number(r.line)));
        for (const r of batchRows(published)) expect(r.batch_id.startsWith(`up-1.${p.index}.`)).toBe(true);
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
    expect(batchRows(published).map((r) => [r.metric_name, Number(r.line)])).toEqual([['r1', 2], ['r3', 5], ['r5', 9]]);
    expect(batchRows(published)[0].labels_raw).toBe('one\r\ntwo');
    // And the same numbers when the split puts every record in its own part.
    const split = await splitCsv(Readable.from([Buffer.from(DCGM_COLUMNS.join(',') + '\r\n' + body)]), 1);
    const lines: number[] = [];
    for await (const p of split.parts) {
      const r = await run(p.body.toString(), partData({ part: p.index, firstLine: p.firstLine }));
      lines.push(...r.result.rejects.map((x) => x.line), ...batchRows(r.published).map((x) => Number(x.line)));
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
    expect(batchRows(published).map((r) => Number(r.line))).toEqual([100, 102]);
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
    for (const r of batchRows(published)) {
      const ms = r.timestamp;
      expect(ms).toBeGreaterThanOrEqual(before - 1);
      expect(ms).toBeLessThanOrEqual(after + 1);
    }
  });

  it('fails the part when a publish fails (so the event is retried)', async () => {
    let calls = 0;
    const attempt = ingestPart(cfgWith(), partData(), Readable.from([Buffer.from(BODY)]), async (batch) => {
      calls++;
      if (batch.id.endsWith('.1')) throw new Error('stream full');
      return { stream: 'TELEMETRY', seq: 1, duplicate: false } as PubAck;
    });
    await expect(attempt).rejects.toThrow('stream full');
    expect(calls).toBeGreaterThanOrEqual(2);
  });
});
