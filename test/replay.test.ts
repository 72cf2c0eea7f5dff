import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDuration, replay } from './local/replay.ts';
import { FIXTURE_CSV, fixtureRows } from './support/fixtures.ts';

// The load generator against a stand-in upload endpoint (it is an HTTP client; the pipeline's
// handling of what it sends is covered end to end by the scale demo and e2e tests).

let server: Server;
let url: string;
const uploads: { at: number; rows: Record<string, string>[] }[] = [];
/** Idempotency-Key → upload id, as the upload function keeps them. */
const keys = new Map<string, string>();
/** Uploads whose 202 is lost (the connection closed after storing them), then answered normally. */
let loseAnswers = 0;
let lostAnswers = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const key = String(req.headers['idempotency-key'] ?? '');
      let id = keys.get(key);
      if (!id) {
        uploads.push({ at: Date.now(), rows: parse(Buffer.concat(chunks), { columns: true }) });
        id = `u${uploads.length}`;
        if (key) keys.set(key, id);
      }
      if (lostAnswers < loseAnswers) {
        lostAnswers++;
        req.socket.destroy();
        return;
      }
      res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ id }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('replay', () => {
  it('parses durations', () => {
    expect([parseDuration('90'), parseDuration('90s'), parseDuration('1.5m'), parseDuration('250ms'), parseDuration('1h')]).toEqual([90_000, 90_000, 90_000, 250, 3_600_000]);
    expect(() => parseDuration('soon')).toThrow(/--duration/);
  });

  it('sends the file at the given rate, re-stamped with the current time, and loops without repeating a sample', async () => {
    uploads.length = 0;
    const t0 = Date.now();
    const fixture = fixtureRows();
    const r = await replay({ file: FIXTURE_CSV, url, rate: 2000, durationMs: 3500, loop: true });
    expect(r.failed).toBe(0);
    // About 2000 rows a second: the first upload at once, then about one per second (the rows
    // accrue with elapsed time, so a late tick sends more rather than fewer).
    expect(uploads[0].rows).toHaveLength(2000);
    expect(r.rows).toBe(uploads.reduce((n, u) => n + u.rows.length, 0));
    expect(r.rows).toBeGreaterThanOrEqual(6000);
    expect(r.rows).toBeLessThanOrEqual(2000 * 5);
    const rows = uploads.flatMap((u) => u.rows);
    // The rows are the file's rows in order (wrapping around), only the timestamp differs.
    rows.forEach((row, i) => expect({ ...row, timestamp: '' }).toEqual({ ...fixture[i % fixture.length], line: undefined, timestamp: '' }));
    const times = rows.map((row) => Date.parse(row.timestamp));
    expect(Math.min(...times)).toBeGreaterThanOrEqual(t0 - 1);
    // The second pass starts after the first pass's last timestamp: no (uuid, metric, time) twice.
    const keys = new Set(rows.map((row) => `${row.uuid} ${row.metric_name} ${row.timestamp}`));
    expect(keys.size).toBe(rows.length);
  }, 20_000);

  it('repeats an upload whose answer was lost under the same Idempotency-Key: stored once, counted once', async () => {
    uploads.length = 0;
    keys.clear();
    loseAnswers = 2;
    lostAnswers = 0;
    const r = await replay({ file: FIXTURE_CSV, url, rate: 500, durationMs: 2500, loop: true });
    expect(lostAnswers).toBe(2);
    expect(r.retries).toBe(2);
    expect(r.failed).toBe(0);
    expect(new Set(r.ids).size).toBe(r.ids.length);
    expect(r.ids).toHaveLength(uploads.length);
    expect(r.rows).toBe(uploads.reduce((n, u) => n + u.rows.length, 0));
    loseAnswers = 0;
  }, 20_000);
});
