import { gzipSync } from 'node:zlib';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uploadAcceptedSchema, uploadStatusSchema } from '../functions/upload/schemas.ts';
import { startStack, type Stack } from './local/stack.ts';
import { httpCases, rowCases, type HttpCase } from './support/bad-input-corpus.ts';
import { HEADER, syntheticCsv, syntheticRow } from './support/csv.ts';
import { waitFor } from './support/ports.ts';
import { rawHttp } from './support/raw-http.ts';

// The bad-input corpus (test/support/bad-input-corpus.ts) against the real stack: every case
// gets the status it states, an error that names the problem in printable ASCII only (no raw
// byte of the input comes back), and both HTTP processes are still alive afterwards. CSV files
// mixing good rows with one bad row store the good rows exactly once (counted in ClickHouse)
// and report the bad one with its line and reason.

let stack: Stack;
let ch: ClickHouseClient;

const printable = /^[\x20-\x7e]*$/;

/** Every string inside a JSON value. */
function strings(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.flatMap(strings);
  if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => [k, ...strings(x)]);
  return [];
}

function expectClean(body: unknown, marker?: string): void {
  for (const s of strings(body)) expect(printable.test(s), `not printable ASCII: ${JSON.stringify(s)}`).toBe(true);
  if (marker) expect(strings(body).join('\n')).not.toContain(marker);
}

const urlOf = (fn: HttpCase['fn']) => (fn === 'upload' ? stack.uploadUrl : stack.queryUrl);

async function alive(): Promise<void> {
  for (const p of stack.processes) expect(p.process.exitCode, `${p.name} exited:\n${p.output.slice(-20).join('\n')}`).toBeNull();
  for (const url of [stack.uploadUrl, stack.queryUrl]) expect((await fetch(`${url}/healthz`)).status).toBe(200);
}

async function send(c: HttpCase): Promise<{ status: number; text: string }> {
  const base = new URL(urlOf(c.fn));
  if (c.raw) {
    const answer = await rawHttp(Number(base.port), c.raw(base.host));
    return { status: answer.status ?? 0, text: Buffer.from(answer.body, 'latin1').toString('utf8') };
  }
  const body = c.body === undefined ? undefined : c.chunked ? new Blob([new Uint8Array(Buffer.from(c.body))]).stream() : c.body;
  const res = await fetch(`${base.origin}${c.path}`, {
    method: c.method ?? (c.body === undefined ? 'GET' : 'POST'),
    headers: c.headers,
    body,
    ...(c.chunked ? { duplex: 'half' } : {}),
  } as RequestInit);
  return { status: res.status, text: await res.text() };
}

async function countRows(where: string, params: Record<string, string>): Promise<{ rows: number; distinct: number }> {
  const rs = await ch.query({
    query: `SELECT count() AS rows, uniqExact(uuid, metric_name, timestamp) AS distinct FROM samples WHERE ${where}`,
    query_params: params,
    format: 'JSONEachRow',
  });
  const [r] = (await rs.json()) as { rows: string; distinct: string }[];
  return { rows: Number(r.rows), distinct: Number(r.distinct) };
}

async function settled(id: string): Promise<any> {
  let s: any;
  await waitFor(async () => {
    s = await (await fetch(`${stack.uploadUrl}/api/v1/uploads/${id}?reasons=10`)).json();
    return s.state === 'done' || s.state === 'failed';
  }, `upload ${id}`, 60_000, 200);
  return s;
}

beforeAll(async () => {
  stack = await startStack({
    env: {
      UPLOAD_MAX_BYTES: String(4 * 1024 * 1024),
      UPLOAD_PART_BYTES: String(256 * 1024),
      INGEST_BATCH_ROWS: '100',
      COLLECT_MAX_WAIT_MS: '1000',
    },
  });
  ch = createClient({ url: stack.clickhouse.url, database: 'telemetry' });
}, 120_000);

afterAll(async () => {
  await ch?.close();
  await stack?.stop();
});

describe('bad requests to the HTTP functions', () => {
  it('has at least 60 cases over both functions, with distinct names', () => {
    expect(httpCases.length + rowCases.length).toBeGreaterThanOrEqual(60);
    expect(new Set(httpCases.map((c) => c.fn))).toEqual(new Set(['upload', 'query']));
    expect(new Set([...httpCases, ...rowCases].map((c) => c.name)).size).toBe(httpCases.length + rowCases.length);
  });

  it.each(httpCases)('$fn: $name → $status', async (c) => {
    const { status, text } = await send(c);
    expect(status, text).toBe(c.status);
    const body = JSON.parse(text);
    expect(body.error.message).toMatch(c.names);
    expectClean(body, c.marker);
    await alive();
  });

  it('a client that disconnects mid-body (raw and multipart) ends its upload failed, naming why; the process stays up', async () => {
    const port = Number(new URL(stack.uploadUrl).port);
    const csv = syntheticCsv('GPU-corpus-cut', 50);
    const boundary = 'cutBoundary';
    for (const [type, body] of [
      ['text/csv', csv],
      [`multipart/form-data; boundary=${boundary}`, `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="c.csv"\r\n\r\n${csv}`],
    ]) {
      const head = `POST /api/v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: ${type}\r\nContent-Length: ${body.length + 5000}\r\n\r\n`;
      const answer = await rawHttp(port, [{ send: head + body, waitMs: 300 }, { close: true }]);
      expect(answer.status).toBeUndefined();
    }
    await alive();
  });
});

describe('accepted encodings (controls): stored exactly once', () => {
  const cases: { name: string; headers: Record<string, string>; body: (csv: string) => BodyInit }[] = [
    { name: 'gzip', headers: { 'content-type': 'text/csv', 'content-encoding': 'gzip' }, body: (csv) => gzipSync(csv) },
    { name: 'x-gzip, charset=utf-8', headers: { 'content-type': 'text/csv; charset=utf-8', 'content-encoding': 'x-gzip' }, body: (csv) => gzipSync(csv) },
    { name: 'charset=us-ascii', headers: { 'content-type': 'text/csv; charset=US-ASCII' }, body: (csv) => csv },
    {
      name: 'multipart with a comment field, gzip',
      headers: { 'content-type': 'multipart/form-data; boundary=okBoundary', 'content-encoding': 'gzip' },
      body: (csv) => gzipSync(`--okBoundary\r\nContent-Disposition: form-data; name="comment"\r\n\r\nnightly dump\r\n--okBoundary\r\nContent-Disposition: form-data; name="file"; filename="d.csv"\r\nContent-Type: text/csv\r\n\r\n${csv}\r\n--okBoundary--\r\n`),
    },
  ];
  it.each(cases.map((c, i) => ({ ...c, i })))('$name', async (c) => {
    const prefix = `GPU-corpus-ok-${c.i}`;
    const res = await fetch(`${stack.uploadUrl}/api/v1/uploads`, { method: 'POST', headers: c.headers, body: c.body(syntheticCsv(prefix, 30)) });
    expect(res.status).toBe(202);
    // The answers are what the documented schemas say (they feed the OpenAPI document).
    const { id } = uploadAcceptedSchema.parse(await res.json());
    const status = uploadStatusSchema.strict().parse(await settled(id));
    expect(status).toMatchObject({ state: 'done', rows_accepted: 30, rows_stored: 30 });
    expect(await countRows('upload_id = {id:String}', { id })).toEqual({ rows: 30, distinct: 30 });
  });
});

describe('CSV files mixing good rows with one bad row', () => {
  const uploads = new Map<string, string>();
  const uuidOf = (i: number, which: string) => `GPU-corpus-row-${i}-${which}`;

  beforeAll(async () => {
    // Line 1 header, 2-3 good, 4 bad, 5 good.
    await Promise.all(
      rowCases.map(async (c, i) => {
        const good = (n: number) => Buffer.from(syntheticRow(uuidOf(i, `g${n}`), n) + '\n');
        const file = Buffer.concat([Buffer.from(HEADER + '\n'), good(0), good(1), Buffer.from(c.row(uuidOf(i, 'bad'))), Buffer.from('\n'), good(2)]);
        const res = await fetch(`${stack.uploadUrl}/api/v1/uploads`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body: file });
        expect(res.status, await res.clone().text()).toBe(202);
        uploads.set(c.name, ((await res.json()) as { id: string }).id);
      }),
    );
  }, 60_000);

  it.each(rowCases.map((c, i) => ({ ...c, i })))('$name', async (c) => {
    const id = uploads.get(c.name)!;
    const status = await settled(id);
    expect(status).toMatchObject({ state: 'done', rows_accepted: 3, rows_rejected: 1, rows_stored: 3 });
    expect(status.rejects).toHaveLength(1);
    expect(status.rejects[0].line).toBe(4);
    expect(status.rejects[0].reason).toMatch(c.reason);
    expectClean(status, c.marker);
    expect(await countRows('upload_id = {id:String}', { id })).toEqual({ rows: 3, distinct: 3 });
    expect((await countRows('uuid = {u:String}', { u: uuidOf(c.i, 'bad') })).rows).toBe(0);
    await alive();
  });
});
