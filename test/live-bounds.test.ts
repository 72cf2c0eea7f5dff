import { createServer, type Server } from 'node:http';
import { connect as tcpConnect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { ClickHouseClient } from '@clickhouse/client';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createQueryHandler } from '../functions/query/index.ts';
import { queryEnv } from '../functions/query/config.ts';
import { clickhouseClient } from '../shared/clickhouse.ts';
import { parseEnv } from '../shared/config.ts';
import { SUBJECTS } from '../shared/names.ts';
import { provisionClickHouse } from '../shared/provision.ts';
import { insertFixture } from './support/fixtures.ts';
import { waitFor } from './support/ports.ts';
import { startClickHouse, startNats, type NatsServer, type RunningServer } from './support/servers.ts';
import { openSse } from './support/sse.ts';

// The relay's memory bound with a client that stops reading: announcements on NATS (as collect
// sends them) for the real sample in a real ClickHouse; the stalled client's queue is dropped and
// it is told so, while a client that keeps reading gets every event.

const DB = 'live_bounds';
const UTIL = 'DCGM_FI_DEV_GPU_UTIL';
const ANNOUNCEMENTS = 300;
let ch: RunningServer;
let nats: NatsServer;
let client: ClickHouseClient;
let nc: NatsConnection;
let server: Server;
let base: string;
let handler: ReturnType<typeof createQueryHandler>;

beforeAll(async () => {
  [ch, nats] = await Promise.all([startClickHouse(), startNats()]);
  const cfg = { CLICKHOUSE_URL: ch.url, CLICKHOUSE_USER: 'default', CLICKHOUSE_PASSWORD: '', CLICKHOUSE_DATABASE: DB };
  const admin = clickhouseClient(cfg, { database: null });
  await provisionClickHouse(admin, DB);
  await insertFixture(admin, DB, { uploadId: 'fixture-upload' });
  await admin.close();
  client = clickhouseClient(cfg);
  nc = await connect({ servers: nats.url });
  const conn = connect({ servers: nats.url });
  handler = createQueryHandler(parseEnv(queryEnv, { LIVE_MAX_PENDING: '4', LIVE_HEARTBEAT_MS: '60000' }), { clickhouse: () => client, nats: () => conn });
  server = createServer((req, res) => void handler(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 120_000);
afterAll(async () => {
  await handler?.close();
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await nc?.close();
  await client?.close();
  await Promise.allSettled([ch?.stop(), nats?.stop()]);
});

describe('live relay bounds', () => {
  it('ignores announcements that are not what collect sends, and keeps relaying', async () => {
    const sse = await openSse(`${base}/api/v1/metrics/${UTIL}/live`);
    await waitFor(async () => sse.events.some((e) => e.event === 'hello'), 'hello', 5000, 20);
    const bad = ['not json', '{"batches":"x"}', '{"batches":[1,2]}', JSON.stringify({ batches: Array(10_001).fill('a') }), '[]', 'null'];
    for (const b of bad) nc.publish(SUBJECTS.stored, b);
    nc.publish(SUBJECTS.stored, JSON.stringify({ batches: ['fixture-upload.0.0'], rows: 'many' }));
    await nc.flush();
    await waitFor(async () => sse.events.some((e) => e.event === 'samples'), 'samples event', 10_000, 20);
    await new Promise((r) => setTimeout(r, 300));
    // Only the last one (a batch list; rows unreadable, counted as 0) was read.
    expect(sse.events.filter((e) => e.event === 'samples')).toHaveLength(1);
    sse.close();
  });

  it('drops the queue of a client that stops reading and tells it; a reading client gets everything', async () => {
    const fast = await openSse(`${base}/api/v1/metrics/${UTIL}/live`);
    // A raw socket that never reads: the server's writes back up once the socket buffers fill.
    const slow: Socket = tcpConnect((server.address() as AddressInfo).port, '127.0.0.1');
    await new Promise((r) => slow.once('connect', r));
    slow.write(`GET /api/v1/metrics/${UTIL}/live HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
    slow.pause();
    await waitFor(async () => fast.events.some((e) => e.event === 'hello'), 'fast hello', 5000, 20);
    await new Promise((r) => setTimeout(r, 200));

    const batches = Array.from({ length: 5 }, (_, i) => `fixture-upload.0.${i}`);
    for (let i = 0; i < ANNOUNCEMENTS; i++) nc.publish(SUBJECTS.stored, JSON.stringify({ batches, rows: 2470 }));
    await nc.flush();
    await waitFor(async () => fast.events.filter((e) => e.event === 'samples').length >= ANNOUNCEMENTS, 'fast client events', 60_000, 100);
    const samples = fast.events.filter((e) => e.event === 'samples');
    expect(samples).toHaveLength(ANNOUNCEMENTS);
    expect(fast.events.some((e) => e.event === 'dropped')).toBe(false);
    expect((JSON.parse(samples[0].data) as { samples: unknown[] }).samples).toHaveLength(247);

    // Now read what the stalled client was sent.
    let text = '';
    slow.on('data', (d) => (text += d.toString('utf8')));
    slow.resume();
    await waitFor(async () => text.includes('event: dropped'), 'dropped event', 10_000, 50);
    await new Promise((r) => setTimeout(r, 300));
    const received = text.split('event: samples').length - 1;
    expect(received).toBeLessThan(ANNOUNCEMENTS);
    const dropped = [...text.matchAll(/event: dropped\ndata: (\{.*\})/g)].map((m) => (JSON.parse(m[1]) as { dropped: number }).dropped);
    expect(dropped.length).toBeGreaterThan(0);
    // Every event was either written to the socket or counted as dropped, exactly.
    expect(received + dropped.reduce((a, b) => a + b, 0)).toBe(ANNOUNCEMENTS);
    slow.destroy();
    fast.close();
  });
});
