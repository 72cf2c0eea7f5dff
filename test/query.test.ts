import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseEnv } from '../shared/config.ts';
import { HttpError } from '../shared/http.ts';
import { queryEnv } from '../functions/query/config.ts';
import { createHmac } from 'node:crypto';
import { cursorFingerprint, cursorSigner, decodeCursor, encodeCursor, NOT_ISSUED, type CursorScope } from '../functions/query/cursor.ts';
import { openApiText } from '../functions/query/openapi.ts';
import { validateRequest } from '../functions/query/params.ts';
import { etagOf, sendConditional } from '../functions/query/requests.ts';
import { telemetryPage } from '../functions/query/sql.ts';
import type { ClickHouseClient } from '@clickhouse/client';
import type { Req, Res } from '../shared/http.ts';
import { gpuPathParams, noQuery, parseInstant, summaryQuery, telemetryQuery } from '../functions/query/schemas.ts';

// Pure rules of the query function: timestamps, parameters, cursors, configuration and the
// committed OpenAPI document.

const limits = { defaultLimit: 1000, maxLimit: 10_000 };
const UUID = 'GPU-5fd4f087-86f3-7a43-b711-4771313afc50';
const SECRET = 'test-cursor-secret-0123456789abcdef';
const DAY_MS = 86_400_000;
const signer = cursorSigner({ current: SECRET }, { maxAgeMs: DAY_MS });

function telemetry(qs: string, uuid = UUID) {
  return validateRequest({ schema: gpuPathParams, values: { uuid } }, { schema: telemetryQuery(limits, signer), url: new URL(`http://x/?${qs}`) });
}

function rejection(fn: () => unknown): HttpError {
  try {
    fn();
  } catch (e) {
    if (e instanceof HttpError) return e;
    throw e;
  }
  throw new Error('expected a 400');
}

describe('parseInstant', () => {
  it('accepts RFC 3339 with Z, offsets, lower case and fractional seconds', () => {
    const base = Date.UTC(2025, 6, 18, 20, 42, 34);
    expect(parseInstant('2025-07-18T20:42:34Z', 'down')).toBe(base);
    expect(parseInstant('2025-07-18t20:42:34z', 'down')).toBe(base);
    expect(parseInstant('2025-07-18 20:42:34Z', 'down')).toBe(base);
    expect(parseInstant('2025-07-18T22:42:34+02:00', 'down')).toBe(base);
    expect(parseInstant('2025-07-18T15:12:34-05:30', 'down')).toBe(base);
    expect(parseInstant('2025-07-18T20:42:34.5Z', 'down')).toBe(base + 500);
    expect(parseInstant('2025-07-18T20:42:34.123Z', 'up')).toBe(base + 123);
  });

  it('keeps both bounds inclusive below millisecond precision', () => {
    const base = Date.UTC(2025, 6, 18, 20, 42, 34);
    expect(parseInstant('2025-07-18T20:42:34.123000000Z', 'up')).toBe(base + 123);
    expect(parseInstant('2025-07-18T20:42:34.123000001Z', 'up')).toBe(base + 124);
    expect(parseInstant('2025-07-18T20:42:34.123999999Z', 'down')).toBe(base + 123);
  });

  it('rejects what is not a valid instant', () => {
    for (const bad of ['', 'yesterday', '2025-07-18', '2025-07-18T20:42:34', '2025-07-18T20:42Z', '1752871354', '2025-02-30T00:00:00Z', '2025-13-01T00:00:00Z', '2025-07-18T24:00:00Z', '2025-07-18T20:60:00Z', '2025-07-18T20:42:34+24:00', '2025-07-18T20:42:34.1234567890Z']) {
      expect(typeof parseInstant(bad, 'down'), bad).toBe('string');
    }
    expect(parseInstant('2024-02-29T00:00:00Z', 'down')).toBe(Date.UTC(2024, 1, 29));
    expect(typeof parseInstant('2100-02-29T00:00:00Z', 'down')).toBe('string');
  });
});

describe('telemetry parameters', () => {
  it('are all optional', () => {
    const { path, query } = telemetry('');
    expect(path.uuid).toBe(UUID);
    expect(query).toEqual({});
  });

  it('parse times, metric, limit and cursor', () => {
    const scope: CursorScope = { uuid: UUID, metric: 'DCGM_FI_DEV_GPU_UTIL' };
    const cursor = encodeCursor(signer, { ts: 1, metric: 'm', batch: 'b', line: 2 }, scope);
    const { query } = telemetry(`start_time=2025-07-18T20:42:34Z&end_time=2025-07-18T20:42:37%2B00:00&metric=DCGM_FI_DEV_GPU_UTIL&limit=10000&cursor=${cursor}`);
    expect(query.start_time).toBe(Date.UTC(2025, 6, 18, 20, 42, 34));
    expect(query.end_time).toBe(Date.UTC(2025, 6, 18, 20, 42, 37));
    expect(query.metric).toBe('DCGM_FI_DEV_GPU_UTIL');
    expect(query.limit).toBe(10_000);
    expect(query.cursor).toEqual({ fingerprint: cursorFingerprint(scope), key: { ts: 1, metric: 'm', batch: 'b', line: 2 } });
  });

  it.each(['abc', '0', '-1', '1.5', '1e3', '', '10001', '99999999999'])('rejects limit=%s naming limit', (value) => {
    const e = rejection(() => telemetry(`limit=${encodeURIComponent(value)}`));
    expect(e.status).toBe(400);
    expect(e.code).toBe('invalid_parameter');
    expect(e.message).toMatch(/^limit /);
    expect(e.details).toEqual({ parameters: [expect.objectContaining({ parameter: 'limit', in: 'query' })] });
  });

  it.each([
    ['start_time', 'start_time=2025-07-18'],
    ['end_time', 'end_time=not-a-time'],
    ['metric', 'metric='],
    ['cursor', 'cursor=%2F%2F%2F'],
    ['cursor', `cursor=${Buffer.from('{"a":1}').toString('base64url')}`],
    ['bogus', 'bogus=1'],
    ['limit', 'limit=5&limit=6'],
  ])('names %s in the 400', (name, qs) => {
    const e = rejection(() => telemetry(qs));
    expect(e.status).toBe(400);
    expect(e.message).toContain(name);
    expect((e.details as { parameters: { parameter: string }[] }).parameters.map((p) => p.parameter)).toContain(name);
  });

  it('reports every bad parameter at once, path included', () => {
    const e = rejection(() => telemetry('start_time=x&limit=0', ''));
    const names = (e.details as { parameters: { parameter: string }[] }).parameters.map((p) => p.parameter).sort();
    expect(names).toEqual(['limit', 'start_time', 'uuid']);
  });

  it('uses the configured maximum', () => {
    const small = telemetryQuery({ defaultLimit: 5, maxLimit: 50 });
    expect(small.safeParse({ limit: '50' }).success).toBe(true);
    expect(small.safeParse({ limit: '51' }).success).toBe(false);
  });

  it('summary takes the window and metric only; listings take nothing', () => {
    expect(summaryQuery.safeParse({ start_time: '2025-07-18T20:42:34Z', metric: 'x' }).success).toBe(true);
    expect(summaryQuery.safeParse({ limit: '5' }).success).toBe(false);
    const e = rejection(() => validateRequest({ schema: noQuery, values: {} }, { schema: noQuery, url: new URL('http://x/?page=2') }));
    expect(e.message).toBe('page is not a known parameter');
  });
});

describe('cursor', () => {
  const scope: CursorScope = { uuid: UUID, start: 0, end: 10 };
  const key = { ts: Date.UTC(2025, 6, 18, 20, 42, 35), metric: 'DCGM_FI_DEV_FB_USED', batch: 'u1.0.1', line: 990 };
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  /** Signed like the API signs, so only the content is wrong. */
  const forge = (secret: string, body: string, kind = 'telemetry') =>
    `${body}.${createHmac('sha256', secret).update(`${kind}.${body}`).digest().subarray(0, 16).toString('base64url')}`;

  it('round-trips the sort key and is URL-safe', () => {
    const c = encodeCursor(signer, key, scope);
    expect(c).toMatch(/^[A-Za-z0-9_.-]+$/);
    expect(decodeCursor(signer, c)).toEqual({ fingerprint: cursorFingerprint(scope), key });
  });

  it('binds to the query it came from', () => {
    const fp = cursorFingerprint(scope);
    expect(cursorFingerprint({ ...scope })).toBe(fp);
    expect(cursorFingerprint({ ...scope, uuid: 'GPU-other' })).not.toBe(fp);
    expect(cursorFingerprint({ ...scope, start: 1 })).not.toBe(fp);
    expect(cursorFingerprint({ ...scope, end: undefined })).not.toBe(fp);
    expect(cursorFingerprint({ ...scope, metric: 'x' })).not.toBe(fp);
  });

  it('refuses a tampered cursor: any changed character of the payload or the signature', () => {
    const valid = encodeCursor(signer, key, scope);
    const [body, mac] = valid.split('.');
    // The payload re-encoded with another row: what an unsigned cursor let a client do.
    const [v, iat, fp] = JSON.parse(Buffer.from(body, 'base64url').toString()) as unknown[];
    expect(decodeCursor(signer, `${b64([v, iat, fp, key.ts, key.metric, key.batch, key.line + 1])}.${mac}`)).toBe(NOT_ISSUED);
    for (let i = 0; i < valid.length; i++) {
      if (valid[i] === '.') continue;
      const flipped = valid.slice(0, i) + (valid[i] === 'A' ? 'B' : 'A') + valid.slice(i + 1);
      expect(typeof decodeCursor(signer, flipped), `position ${i}`).toBe('string');
    }
  });

  it('refuses a cursor signed with another key, or for another kind of page', () => {
    const other = cursorSigner({ current: 'another-secret-0123456789abcdefghij' }, { maxAgeMs: DAY_MS });
    expect(decodeCursor(signer, encodeCursor(other, key, scope))).toBe(NOT_ISSUED);
    const gpusPage = signer.seal('gpus', [cursorFingerprint(scope), key.ts, key.metric, key.batch, key.line]);
    expect(decodeCursor(signer, gpusPage)).toBe(NOT_ISSUED);
  });

  it('accepts cursors of the previous key during a rotation, and signs only with the current one', () => {
    const oldCursor = encodeCursor(signer, key, scope);
    const rotated = cursorSigner({ current: 'the-new-secret-0123456789abcdefghij', previous: [SECRET] }, { maxAgeMs: DAY_MS });
    expect(decodeCursor(rotated, oldCursor)).toEqual({ fingerprint: cursorFingerprint(scope), key });
    const fresh = encodeCursor(rotated, key, scope);
    expect(decodeCursor(signer, fresh)).toBe(NOT_ISSUED);
    // Once the previous key is dropped, its cursors are refused.
    const done = cursorSigner({ current: 'the-new-secret-0123456789abcdefghij' }, { maxAgeMs: DAY_MS });
    expect(decodeCursor(done, oldCursor)).toBe(NOT_ISSUED);
    expect(decodeCursor(done, fresh)).toEqual({ fingerprint: cursorFingerprint(scope), key });
  });

  it('expires after the maximum age (which bounds how long a previous key is needed)', () => {
    let now = Date.UTC(2026, 0, 1);
    const clocked = cursorSigner({ current: SECRET }, { maxAgeMs: 3_600_000, now: () => now });
    const c = encodeCursor(clocked, key, scope);
    now += 3_600_000;
    expect(typeof decodeCursor(clocked, c)).toBe('object');
    now += 1000;
    expect(decodeCursor(clocked, c)).toMatch(/has expired/);
    // Issued "in the future" (a forged or clock-skewed issue time) is not accepted either.
    now = Date.UTC(2026, 0, 1) - 120_000;
    expect(decodeCursor(clocked, c)).toBe(NOT_ISSUED);
  });

  it('rejects anything it did not issue, even correctly signed garbage', () => {
    const iat = Math.floor(Date.now() / 1000);
    for (const bad of [
      '',
      'not base64!',
      'Zm9v',
      encodeCursor(signer, key, scope).slice(0, -3),
      forge(SECRET, b64([1, 'x'.repeat(16), 1, 'm', 'b', 1])),
      forge(SECRET, b64([2, iat, 'short', 1, 'm', 'b', 1])),
      forge(SECRET, b64([2, iat, 'x'.repeat(16), 1.5, 'm', 'b', 1])),
      forge(SECRET, b64([2, iat, 'x'.repeat(16), 1, 'm', 'b', -1])),
      forge(SECRET, b64({ ts: 1 })),
      forge(SECRET, Buffer.from('not json').toString('base64url')),
      'A'.repeat(2000),
    ]) {
      expect(typeof decodeCursor(signer, bad), bad).toBe('string');
    }
    expect(decodeCursor(signer, forge(SECRET, b64([2, iat, 'x'.repeat(16), 1, 'm', 'b', 1])))).toEqual({ fingerprint: 'x'.repeat(16), key: { ts: 1, metric: 'm', batch: 'b', line: 1 } });
  });

  it('names cursor in the 400 for a tampered one; without a key no cursor is accepted', () => {
    const valid = encodeCursor(signer, key, { uuid: UUID });
    const tampered = valid.slice(0, 5) + (valid[5] === 'A' ? 'B' : 'A') + valid.slice(6);
    const e = rejection(() => telemetry(`cursor=${tampered}`));
    expect(e.status).toBe(400);
    expect(e.message).toMatch(/^cursor was not issued by this API or was altered/);
    expect(telemetryQuery(limits).safeParse({ cursor: valid }).success).toBe(false);
  });
});

describe('configuration', () => {
  it('defaults to 1000 per page, at most 10000', () => {
    const cfg = parseEnv(queryEnv, {});
    expect(cfg.QUERY_DEFAULT_LIMIT).toBe(1000);
    expect(cfg.QUERY_MAX_LIMIT).toBe(10_000);
    expect(cfg.CLICKHOUSE_DATABASE).toBe('telemetry');
    expect(cfg.API_TOKENS.size).toBe(0);
  });

  it('cursor secrets: at least 32 characters, previous ones comma-separated, unset allowed', () => {
    const long = 'x'.repeat(32);
    expect(parseEnv(queryEnv, {}).CURSOR_SECRET).toBeUndefined();
    expect(parseEnv(queryEnv, { CURSOR_SECRET: '' }).CURSOR_SECRET).toBeUndefined();
    expect(parseEnv(queryEnv, { CURSOR_SECRET: long, CURSOR_SECRET_PREVIOUS: `${long}a, ${long}b` })).toMatchObject({
      CURSOR_SECRET: long,
      CURSOR_SECRET_PREVIOUS: [`${long}a`, `${long}b`],
      CURSOR_MAX_AGE_S: 86_400,
    });
    expect(() => parseEnv(queryEnv, { CURSOR_SECRET: 'short' })).toThrow(/CURSOR_SECRET: must be at least 32/);
    expect(() => parseEnv(queryEnv, { CURSOR_SECRET_PREVIOUS: `${long},short` })).toThrow(/CURSOR_SECRET_PREVIOUS/);
  });

  it('refuses a default above the maximum, naming the variable', () => {
    expect(() => parseEnv(queryEnv, { QUERY_DEFAULT_LIMIT: '500', QUERY_MAX_LIMIT: '100' })).toThrow(ConfigError);
    expect(() => parseEnv(queryEnv, { QUERY_MAX_LIMIT: 'lots' })).toThrow(/QUERY_MAX_LIMIT/);
  });
});

describe('OpenAPI document', () => {
  it('matches the committed functions/query/openapi.json (run `npm run openapi` after changing schemas)', () => {
    const committed = readFileSync(new URL('../functions/query/openapi.json', import.meta.url), 'utf8');
    expect(committed).toBe(openApiText());
  });

  it('documents every route with its parameters', () => {
    const doc = JSON.parse(openApiText());
    expect(doc.openapi).toBe('3.0.3');
    expect(Object.keys(doc.paths).sort()).toEqual(
      [
        '/api/v1/anomalies',
        '/api/v1/gpus',
        '/api/v1/gpus/{uuid}/live',
        '/api/v1/gpus/{uuid}/series',
        '/api/v1/gpus/{uuid}/summary',
        '/api/v1/gpus/{uuid}/telemetry',
        '/api/v1/hosts',
        '/api/v1/metrics',
        '/api/v1/metrics/{metric}/live',
        '/api/v1/metrics/{metric}/top',
        '/api/v1/pipeline',
        '/api/v1/uploads/{id}/duplicates',
        '/graphql',
        '/healthz',
        '/metrics',
        '/openapi.json',
        '/readyz',
      ].sort(),
    );
    const series = doc.paths['/api/v1/gpus/{uuid}/series'].get.parameters;
    expect(series.map((p: { name: string }) => p.name)).toEqual(['uuid', 'metric', 'start_time', 'end_time', 'step', 'max_points']);
    expect(series.find((p: { name: string }) => p.name === 'metric').schema).toMatchObject({ type: 'array', maxItems: 10 });
    const params = doc.paths['/api/v1/gpus/{uuid}/telemetry'].get.parameters;
    expect(params.map((p: { name: string }) => p.name)).toEqual(['uuid', 'start_time', 'end_time', 'metric', 'limit', 'cursor']);
    expect(params.find((p: { name: string }) => p.name === 'limit').schema).toMatchObject({ type: 'integer', minimum: 1, maximum: 10_000, default: 1000 });
    expect(Object.keys(doc.paths['/api/v1/gpus/{uuid}/telemetry'].get.responses)).toEqual(['200', '400', '401', '403', '404', '500']);
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
  });
});

describe('conditional answers', () => {
  /** What sendConditional writes for `body` (a stand-in response that records it). */
  function answer(body: unknown, ifNoneMatch?: string) {
    const sent = { status: 0, headers: {} as Record<string, unknown>, body: '' };
    const res = {
      headersSent: false,
      writeHead(status: number, headers: Record<string, unknown>) {
        Object.assign(sent, { status, headers });
      },
      end(payload?: string) {
        sent.body = payload ?? '';
      },
    };
    sendConditional({ headers: ifNoneMatch ? { 'if-none-match': ifNoneMatch } : {} } as Req, res as unknown as Res, body);
    return sent;
  }

  it('tags the body with its cursor replaced by whether there is one, and sends it as JSON.stringify writes it', () => {
    const bodies = [
      { gpus: [{ uuid: 'GPU-1', metrics: ['a'] }], count: 1, next_cursor: 'eyJ4IjoxfQ.abc' },
      { hosts: [], next_cursor: null },
      { metric: 'm', gpus: [{ value: 1.5 }] }, // no cursor at all
      { next_cursor: 'c', after: 'the cursor is not the last key' },
      { anomalies: [{ detail: { next_cursor: 'inner' } }], next_cursor: '"quoted"' },
    ];
    for (const body of bodies) {
      const sent = answer(body);
      expect(sent.status).toBe(200);
      expect(sent.body).toBe(JSON.stringify(body));
      const cursor = (body as { next_cursor?: unknown }).next_cursor;
      expect(sent.headers.etag).toBe(etagOf(JSON.stringify(cursor === undefined ? body : { ...body, next_cursor: cursor !== null })));
      expect(answer(body, String(sent.headers.etag)).status).toBe(304);
    }
    // Another signature time, the same page: the same tag.
    expect(answer({ hosts: [], next_cursor: 'later.xyz' }).headers.etag).toBe(answer({ hosts: [], next_cursor: 'earlier.abc' }).headers.etag);
    expect(answer({ hosts: [], next_cursor: 'x' }).headers.etag).not.toBe(answer({ hosts: [], next_cursor: null }).headers.etag);
  });
});

describe('telemetry page text', () => {
  const row = (ts: string, metric: string, line: number) =>
    `{"timestamp":"${ts}","metric_name":"${metric}","value":1,"gpu_id":"0","device":"nvidia0","uuid":"${UUID}","model_name":"m","hostname":"hôte-☃",` +
    `"container":"","pod":"","namespace":"","labels_raw":"","labels":{"batch_id":"x"},"batch_id":"up.0.0","line":${line}}`;
  /** A client whose every query answers `text` (what ClickHouse streamed), in 7-byte chunks: rows cross chunk edges. */
  const answering = (text: string) => {
    const bytes = Buffer.from(text);
    const chunks = Array.from({ length: Math.ceil(bytes.length / 7) }, (_, i) => bytes.subarray(i * 7, i * 7 + 7));
    return { exec: async () => ({ stream: Readable.from(chunks) }) } as unknown as ClickHouseClient;
  };
  const rows = [row('2025-07-18T20:42:34.000Z', 'A', 2), row('2025-07-18T20:42:34.000Z', 'B', 3), row('2025-07-18T20:42:35.000Z', 'A', 4)];

  it('cuts batch_id and line off each row and takes the cursor from the last row of the page', async () => {
    const page = await telemetryPage(answering(rows.join('\n') + '\n'), { uuid: UUID }, { limit: 2 });
    expect(page.data.map((d) => JSON.parse(d.toString()))).toEqual(rows.slice(0, 2).map((r) => {
      const { batch_id: _b, line: _l, ...rest } = JSON.parse(r);
      return rest;
    }));
    expect(page.next).toEqual({ ts: Date.parse('2025-07-18T20:42:34.000Z'), metric: 'B', batch: 'up.0.0', line: 3 });
    expect((await telemetryPage(answering(rows.join('\n') + '\n'), { uuid: UUID }, { limit: 3 })).next).toBeUndefined();
    expect(await telemetryPage(answering(''), { uuid: UUID }, { limit: 3 })).toEqual({ data: [] });
  });

  it('refuses the page when ClickHouse wrote anything but sample rows (an exception after the rows, a cut row)', async () => {
    const exception = '\r\n__exception__\r\nabcdefghijklmnop\r\nCode: 241. DB::Exception: Memory limit exceeded\n52 __exception__\r\nabcdefghijklmnop\r\n';
    await expect(telemetryPage(answering(rows.join('\n') + exception), { uuid: UUID }, { limit: 2 })).rejects.toThrow(/unexpected row/);
    await expect(telemetryPage(answering(rows.join('\n') + exception), { uuid: UUID }, { limit: 10 })).rejects.toThrow(/unexpected row/);
    await expect(telemetryPage(answering(rows[0].slice(0, 80) + '\n'), { uuid: UUID }, { limit: 10 })).rejects.toThrow(/unexpected row/);
    // Shorter than a row's head, yet holding the private tail's marker.
    await expect(telemetryPage(answering(',"batch_id":\n'), { uuid: UUID }, { limit: 10 })).rejects.toThrow(/unexpected row/);
  });
});
