import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rmSync } from 'node:fs';
import { connect, type NatsConnection } from 'nats';
import snappy from 'snappyjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeRemoteWrite, remoteWriteHeaders, sendRemoteWrite } from '../functions/remote-write/client.ts';
import { parseEnv } from '../shared/config.ts';
import { createRemoteWriteHandler, WRITE_PATH } from '../functions/remote-write/index.ts';
import { remoteWriteEnv } from '../functions/remote-write/config.ts';
import { encodeWriteRequest } from '../functions/remote-write/proto.ts';
import { registry } from '../shared/metrics.ts';
import { STREAMS, SUBJECTS } from '../shared/names.ts';
import { provisionEnv, provisionNats } from '../shared/provision.ts';
import { rowSeries } from './support/dcgm-series.ts';
import { fixtureRows } from './support/fixtures.ts';
import { freePort } from './support/ports.ts';
import { startNats, type NatsServer } from './support/servers.ts';

// The remote-write HTTP function on a real nats-server: what it answers (204 only once the
// batches are in JetStream; 4xx naming the problem for malformed requests; 503 with Retry-After
// while NATS is down or the stream is full) and what it publishes (deterministic, deduplicated).

const WRITE_TOKEN = 'rw-test-write';
const READ_TOKEN = 'rw-test-read';
const MAX_BYTES = 256 * 1024;
const MAX_DECODED = 1024 * 1024;

let nats: NatsServer;
let nc: NatsConnection;
let server: Server;
let url: string;
let natsUrl: string;
let handlerNats: NatsConnection;

const series = rowSeries(fixtureRows());

async function post(body: BodyInit | Buffer, headers: Record<string, string> = remoteWriteHeaders(WRITE_TOKEN), extra: RequestInit = {}) {
  const res = await fetch(url, { method: 'POST', headers, body: body as BodyInit, ...extra });
  const text = await res.text();
  return { status: res.status, error: text ? JSON.parse(text).error : undefined, retryAfter: res.headers.get('retry-after') };
}

async function telemetryMessages(): Promise<number> {
  return (await (await nc.jetstreamManager()).streams.info(STREAMS.telemetry)).state.messages;
}

async function metric(name: string, labels = ''): Promise<number> {
  const text = await registry.metrics();
  const m = new RegExp(`^${name}${labels.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

beforeAll(async () => {
  nats = await startNats();
  natsUrl = nats.url;
  nc = await connect({ servers: nats.url });
  await provisionNats(nc, parseEnv(provisionEnv, { TELEMETRY_STREAM_MAX_BYTES: String(8 * 1024 * 1024) }));
  const cfg = parseEnv(remoteWriteEnv, {
    API_TOKENS: `${WRITE_TOKEN}:write,${READ_TOKEN}:read`,
    REMOTE_WRITE_MAX_BYTES: String(MAX_BYTES),
    REMOTE_WRITE_MAX_DECODED_BYTES: String(MAX_DECODED),
    REMOTE_WRITE_BATCH_ROWS: '1000',
    REMOTE_WRITE_PUBLISH_TIMEOUT_MS: '2000',
  });
  handlerNats = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
  const handler = createRemoteWriteHandler(cfg, { nats: async () => handlerNats });
  server = createServer((req, res) => void handler(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${WRITE_PATH}`;
}, 60_000);

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await handlerNats?.close();
  await nc?.close();
  const dir = nats?.dataDir;
  await nats?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('accepted requests', () => {
  it('answers 204 once the sample is in the telemetry stream, as batches collect accepts', async () => {
    const before = await telemetryMessages();
    const accepted = await metric('gputel_remote_write_samples_accepted_total');
    const res = await sendRemoteWrite(url, series, { token: WRITE_TOKEN });
    expect(res.status).toBe(204);
    expect(await telemetryMessages()).toBe(before + 3); // 2,470 samples in batches of 1,000
    // The three batches (published concurrently, so in any order): ids <request hash>.0.<seq>.
    const jsm = await nc.jetstreamManager();
    const last = (await jsm.streams.info(STREAMS.telemetry)).state.last_seq;
    const batches = await Promise.all([0, 1, 2].map((k) => jsm.streams.getMessage(STREAMS.telemetry, { seq: last - k })));
    const byId = new Map(batches.map((m) => [m.header.get('Nats-Msg-Id'), m.header.get('ce-rows')]));
    const ids = [...byId.keys()].sort();
    expect(ids[0]).toMatch(/^rw-[0-9a-f]{32}\.0\.0$/);
    expect(ids).toEqual([0, 1, 2].map((n) => ids[0].replace(/\.0$/, `.${n}`)));
    expect(ids.map((id) => byId.get(id))).toEqual(['1000', '1000', '470']);
    expect(await metric('gputel_remote_write_samples_accepted_total')).toBe(accepted + 2470);
  });

  it('a retried request (Prometheus retries on 5xx) publishes the same ids, which JetStream drops', async () => {
    const before = await telemetryMessages();
    expect((await sendRemoteWrite(url, series, { token: WRITE_TOKEN })).status).toBe(204);
    expect(await telemetryMessages()).toBe(before);
  });

  it('counts dropped samples by reason and still answers 204', async () => {
    const bits = new DataView(new ArrayBuffer(8));
    bits.setUint32(0, 0x7ff00000);
    bits.setUint32(4, 2);
    const stale = bits.getFloat64(0); // Prometheus's staleness marker
    const noUuid = await metric('gputel_remote_write_samples_dropped_total', '{reason="no_uuid"}');
    const staleBefore = await metric('gputel_remote_write_samples_dropped_total', '{reason="stale"}');
    const res = await sendRemoteWrite(
      url,
      [
        { labels: [{ name: '__name__', value: 'up' }, { name: 'job', value: 'node' }], samples: [{ value: 1, timestamp: Date.now() }] },
        { labels: series[0].labels, samples: [{ value: stale, timestamp: Date.now() }] },
      ],
      { token: WRITE_TOKEN },
    );
    expect(res.status).toBe(204);
    expect(await metric('gputel_remote_write_samples_dropped_total', '{reason="no_uuid"}')).toBe(noUuid + 1);
    expect(await metric('gputel_remote_write_samples_dropped_total', '{reason="stale"}')).toBe(staleBefore + 1);
  });

  it('accepts the 1.0 media type with its proto parameter', async () => {
    const headers = { ...remoteWriteHeaders(WRITE_TOKEN), 'content-type': 'application/x-protobuf; proto=prometheus.WriteRequest' };
    expect((await post(encodeRemoteWrite(series.slice(0, 5)), headers)).status).toBe(204);
  });

  it('accepts an empty WriteRequest (e.g. metadata only) with 204 and publishes nothing', async () => {
    const before = await telemetryMessages();
    expect((await post(encodeRemoteWrite([]))).status).toBe(204);
    expect(await telemetryMessages()).toBe(before);
  });
});

describe('malformed requests get 4xx naming the problem, and publish nothing', () => {
  let count: number;
  beforeAll(async () => {
    count = await telemetryMessages();
  });
  afterAll(async () => {
    expect(await telemetryMessages()).toBe(count);
  });

  const good = () => encodeRemoteWrite(series.slice(0, 5));

  it('wrong or missing Content-Type → 415 (remote write 2.0 included)', async () => {
    for (const type of ['application/json', 'application/x-protobuf;proto=io.prometheus.write.v2.Request', '']) {
      const r = await post(good(), { ...remoteWriteHeaders(WRITE_TOKEN), 'content-type': type });
      expect(r.status, type).toBe(415);
      expect(r.error.code).toBe('unsupported_media_type');
      expect(r.error.message).toMatch(/application\/x-protobuf/);
    }
  });

  it('Content-Encoding other than snappy → 415', async () => {
    const { 'content-encoding': _, ...noEncoding } = remoteWriteHeaders(WRITE_TOKEN);
    for (const headers of [noEncoding, { ...noEncoding, 'content-encoding': 'gzip' }]) {
      const r = await post(good(), headers);
      expect(r.status).toBe(415);
      expect(r.error).toMatchObject({ code: 'unsupported_encoding' });
      expect(r.error.message).toMatch(/snappy/);
    }
  });

  it('missing version header → 400, another version → 415', async () => {
    const { 'x-prometheus-remote-write-version': _, ...noVersion } = remoteWriteHeaders(WRITE_TOKEN);
    expect((await post(good(), noVersion)).error).toMatchObject({ code: 'missing_version' });
    expect((await post(good(), noVersion)).status).toBe(400);
    const v2 = await post(good(), { ...noVersion, 'x-prometheus-remote-write-version': '2.0.0' });
    expect(v2.status).toBe(415);
    expect(v2.error.message).toMatch(/0\.1\.0/);
  });

  it('empty body → 400', async () => {
    const r = await post(Buffer.alloc(0));
    expect(r).toMatchObject({ status: 400, error: { code: 'empty_body' } });
  });

  it('bytes that are not snappy → 400 bad_snappy, without echoing them', async () => {
    const r = await post(Buffer.from('\x05this is plain text, not snappy'));
    expect(r).toMatchObject({ status: 400, error: { code: 'bad_snappy' } });
    expect(r.error.message).not.toMatch(/plain text/);
  });

  it('valid snappy around bytes that are not a WriteRequest → 400 bad_protobuf', async () => {
    for (const raw of [Buffer.from('{"timeseries": []} is JSON, not protobuf'), Buffer.from(encodeWriteRequest({ timeseries: series.slice(0, 3) })).subarray(0, 50)]) {
      const r = await post(Buffer.from(snappy.compress(raw)));
      expect(r).toMatchObject({ status: 400, error: { code: 'bad_protobuf' } });
      expect(r.error.message).toMatch(/not a valid protobuf prometheus\.WriteRequest/);
      expect(r.error.message).not.toMatch(/JSON/);
    }
  });

  it('a body over REMOTE_WRITE_MAX_BYTES → 413, declared or not', async () => {
    const big = Buffer.alloc(MAX_BYTES + 1, 1);
    const declared = await post(big);
    expect(declared).toMatchObject({ status: 413, error: { code: 'payload_too_large' } });
    expect(declared.error.message).toMatch(String(MAX_BYTES));
    // Chunked: no Content-Length, so the limit is found while reading.
    const stream = new ReadableStream({
      start(c) {
        for (let i = 0; i < 5; i++) c.enqueue(new Uint8Array(MAX_BYTES / 4));
        c.close();
      },
    });
    const chunked = await post(stream as unknown as BodyInit, remoteWriteHeaders(WRITE_TOKEN), { duplex: 'half' } as RequestInit);
    expect(chunked).toMatchObject({ status: 413, error: { code: 'payload_too_large' } });
  });

  it('a snappy header declaring more than REMOTE_WRITE_MAX_DECODED_BYTES → 413 before anything is allocated', async () => {
    // varint 0x40000000 (1 GiB) followed by a few bytes: a 9-byte body claiming 1 GiB.
    const r = await post(Buffer.from([0x80, 0x80, 0x80, 0x80, 0x04, 0x00, 0x01, 0x02, 0x03]));
    expect(r).toMatchObject({ status: 413, error: { code: 'payload_too_large' } });
    expect(r.error.message).toMatch(/1073741824 bytes declared/);
    // A real request that decompresses beyond the limit (highly compressible, small on the wire).
    const huge = rowSeries(Array.from({ length: 4000 }, () => fixtureRows()[0]));
    const body = encodeRemoteWrite(huge);
    expect(body.length).toBeLessThan(MAX_BYTES);
    expect((await post(body)).status).toBe(413);
  });

  it('without a token → 401, with a read-only token → 403; GET → 405', async () => {
    const { authorization: _, ...anonymous } = remoteWriteHeaders(WRITE_TOKEN);
    expect((await post(good(), anonymous)).status).toBe(401);
    const r = await post(good(), remoteWriteHeaders(READ_TOKEN));
    expect(r.status).toBe(403);
    expect(r.error.message).toMatch(/"write" scope/);
    expect((await fetch(url)).status).toBe(405);
  });
});

describe('back-pressure: 503 with Retry-After, then the retry succeeds', () => {
  it('answers 503 stream_full while the telemetry stream is full', async () => {
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info(STREAMS.telemetry);
    await jsm.streams.update(STREAMS.telemetry, { ...info.config, max_bytes: 1024 * 1024 });
    try {
      const js = nc.jetstream();
      // Fill it to the last few KiB (nothing consumes in this test).
      for (const size of [128 * 1024, 4 * 1024]) {
        for (let i = 0; i < 400; i++) {
          const stored = await js.publish(SUBJECTS.samples, new Uint8Array(size)).then(() => true, () => false);
          if (!stored) break;
        }
      }
      const other = rowSeries(fixtureRows().slice(0, 50), () => Date.UTC(2026, 0, 1));
      const res = await sendRemoteWrite(url, other, { token: WRITE_TOKEN });
      expect(res.status).toBe(503);
      expect(JSON.parse(res.body).error.code).toBe('stream_full');
      expect(res.retryAfter).toBe('30');
      await jsm.streams.purge(STREAMS.telemetry);
      expect((await sendRemoteWrite(url, other, { token: WRITE_TOKEN })).status).toBe(204);
    } finally {
      await jsm.streams.purge(STREAMS.telemetry);
      await jsm.streams.update(STREAMS.telemetry, info.config);
    }
  });

  it('answers 503 with Retry-After when NATS cannot be reached at all', async () => {
    const cfg = parseEnv(remoteWriteEnv, { REMOTE_WRITE_PUBLISH_TIMEOUT_MS: '1000' });
    const unreachable = `nats://127.0.0.1:${await freePort()}`;
    const handler = createRemoteWriteHandler(cfg, { nats: () => connect({ servers: unreachable }) });
    const alone = createServer((req, res) => void handler(req, res));
    await new Promise<void>((r) => alone.listen(0, '127.0.0.1', r));
    try {
      const res = await sendRemoteWrite(`http://127.0.0.1:${(alone.address() as AddressInfo).port}${WRITE_PATH}`, series.slice(0, 5));
      expect(res.status).toBe(503);
      expect(res.retryAfter).toBe('5');
    } finally {
      await new Promise((r) => alone.close(r));
    }
  });

  it('answers 503 while NATS is down and 204 for the same request once it is back', async () => {
    const { port, monitorPort, dataDir } = nats;
    await nc.close();
    await nats.stop({ keepData: true });
    const other = rowSeries(fixtureRows().slice(0, 20), () => Date.UTC(2026, 0, 2));
    const down = await sendRemoteWrite(url, other, { token: WRITE_TOKEN });
    expect(down.status).toBe(503);
    expect(down.retryAfter).toBe('5');
    expect(JSON.parse(down.body).error.message).toMatch(/NATS/);
    nats = await startNats({ dataDir, port, monitorPort });
    nc = await connect({ servers: natsUrl });
    let status = 0;
    // The handler's connection reconnects on its own; the sender just retries.
    for (let i = 0; i < 100 && status !== 204; i++) {
      status = (await sendRemoteWrite(url, other, { token: WRITE_TOKEN })).status;
      if (status !== 204) await new Promise((r) => setTimeout(r, 200));
    }
    expect(status).toBe(204);
  }, 60_000);
});
