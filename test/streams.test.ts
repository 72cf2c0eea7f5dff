import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { request } from 'node:http';
import { join } from 'node:path';
import { connect, DiscardPolicy, nanos, RetentionPolicy, type JetStreamManager, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseEnv } from '../shared/config.ts';
import { purgeAcknowledged, sweepWorkQueues } from '../shared/janitor.ts';
import { BUCKETS, CONSUMERS, STREAMS, SUBJECTS } from '../shared/names.ts';
import { objectStream } from '../shared/object-store.ts';
import { provisionAll } from '../shared/provision-main.ts';
import { provisionEnv, provisionNats } from '../shared/provision.ts';
import { publishSampleBatch } from '../shared/sample-batch.ts';
import { isTransient } from '../shared/transient.ts';
import { repoRoot, startStack, type Stack } from './local/stack.ts';
import { natsStoreDir, startNats, type NatsServer } from './support/servers.ts';

// Stream bounds and the janitor: every stream is bounded and refuses (never drops) what does
// not fit, work queues never age out, a provisioning re-run updates what exists, and messages
// acknowledged before a nats-server crash but left in a work queue are purged — only those.

const FIXTURE = join(repoRoot, 'test', 'fixtures', 'dcgm_metrics_20250718_134233.csv');
const HOUR_NS = nanos(3600_000);

async function natsWithClient(dataDir?: string, ports: { port?: number; monitorPort?: number } = {}) {
  const server = await startNats({ dataDir, ...ports });
  const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  return { server, nc, jsm: await nc.jetstreamManager() };
}

describe('provisioned bounds', () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  beforeAll(async () => ({ server, nc, jsm } = await natsWithClient()));
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it('bound every stream with discard new and never age out a work queue', async () => {
    await provisionNats(nc, parseEnv(provisionEnv, {}));
    const cfg = async (name: string) => (await jsm.streams.info(name)).config;
    const uploads = await cfg(STREAMS.uploads);
    expect(uploads).toMatchObject({ retention: RetentionPolicy.Workqueue, max_age: 0, max_msgs: 100_000, discard: DiscardPolicy.New });
    const telemetry = await cfg(STREAMS.telemetry);
    expect(telemetry).toMatchObject({ retention: RetentionPolicy.Workqueue, max_age: 0, max_bytes: 8 * 1024 ** 3, discard: DiscardPolicy.New });
    const dead = await cfg(STREAMS.deadLetter);
    expect(dead).toMatchObject({ max_age: 168 * HOUR_NS, max_bytes: 1024 ** 3, discard: DiscardPolicy.New });
    const objects = await cfg(objectStream(BUCKETS.objects));
    expect(objects).toMatchObject({ max_bytes: 4 * 1024 ** 3, discard: DiscardPolicy.New });
  });

  it('a re-run updates existing streams and buckets, including ones created by the old settings', async () => {
    // What provisioning used to create: an upload queue that aged out after RETENTION_HOURS.
    await jsm.streams.update(STREAMS.uploads, { max_age: 168 * HOUR_NS, max_msgs: -1 });
    await provisionNats(nc, parseEnv(provisionEnv, {
      RETENTION_HOURS: '24',
      UPLOADS_STREAM_MAX_MSGS: '500',
      TELEMETRY_STREAM_MAX_BYTES: String(64 * 1024 ** 2),
      DEAD_LETTER_STREAM_MAX_BYTES: String(32 * 1024 ** 2),
      UPLOAD_STORE_MAX_BYTES: String(128 * 1024 ** 2),
      CONSUMER_ACK_WAIT_MS: '5000',
    }));
    const cfg = async (name: string) => (await jsm.streams.info(name)).config;
    expect(await cfg(STREAMS.uploads)).toMatchObject({ max_age: 0, max_msgs: 500 });
    expect((await cfg(STREAMS.telemetry)).max_bytes).toBe(64 * 1024 ** 2);
    expect(await cfg(STREAMS.deadLetter)).toMatchObject({ max_age: 24 * HOUR_NS, max_bytes: 32 * 1024 ** 2 });
    expect(await cfg(objectStream(BUCKETS.objects))).toMatchObject({ max_age: 24 * HOUR_NS, max_bytes: 128 * 1024 ** 2 });
    for (const b of [BUCKETS.status, BUCKETS.progress]) expect((await cfg(`KV_${b}`)).max_age).toBe(24 * HOUR_NS);
    expect((await jsm.consumers.info(STREAMS.uploads, CONSUMERS.ingest)).config.ack_wait).toBe(nanos(5000));
  });

  it('a full stream refuses the publish with an error the workers treat as an outage (retried, never dropped)', async () => {
    await provisionNats(nc, parseEnv(provisionEnv, { UPLOADS_STREAM_MAX_MSGS: '10', TELEMETRY_STREAM_MAX_BYTES: String(1024 ** 2) }));
    await jsm.streams.purge(STREAMS.uploads);
    const js = nc.jetstream();
    for (let i = 0; i < 10; i++) await js.publish(SUBJECTS.uploaded, Buffer.from(`{"n":${i}}`));
    const full = await js.publish(SUBJECTS.uploaded, Buffer.from('{"n":10}')).catch((e: unknown) => e);
    expect(full).toBeInstanceOf(Error);
    expect(isTransient(full)).toBe(true);
    expect((await jsm.streams.info(STREAMS.uploads)).state.messages).toBe(10);

    // Random bytes: batch bodies are compressed on the way, so they must not shrink.
    const body = randomBytes(600 * 1024);
    await publishSampleBatch(js, { id: 'full.0.0', sourceId: 'full', rows: 1, body }, '/test');
    const refused = await publishSampleBatch(js, { id: 'full.0.1', sourceId: 'full', rows: 1, body }, '/test').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(Error);
    expect(isTransient(refused)).toBe(true);
    expect((await jsm.streams.info(STREAMS.telemetry)).state.messages).toBe(1);
    await provisionNats(nc, parseEnv(provisionEnv, {}));
  });
});

describe('the janitor', () => {
  it('purges what a nats-server crash left below the ack floor, and nothing else', async () => {
    // A kill -9 can persist a work-queue consumer's ack floor but lose the deletes of the messages
    // it acknowledged (nats-server 2.9 file store): they stay stored, are never delivered again,
    // and hold the stream's bounds. Whether a crash lands in that window is timing, so the test
    // builds the same state on disk: the stream's files from before the acks, the consumer's
    // from after. (test/nats-crash.test.ts crashes the server for real, end to end.)
    let { server, nc, jsm } = await natsWithClient();
    const { port, monitorPort, dataDir } = server;
    const msgsDir = join(natsStoreDir(dataDir), 'jetstream', '$G', 'streams', STREAMS.uploads, 'msgs');
    const beforeAcks = mkdtempSync(join(tmpdir(), 'gputel-msgs-'));
    // Stops the server cleanly, edits its files while it is down, starts it on them again.
    const restart = async (whileDown: () => void) => {
      await nc.close();
      await server.stop({ keepData: true });
      whileDown();
      ({ server, nc, jsm } = await natsWithClient(dataDir, { port, monitorPort }));
    };
    try {
      await provisionNats(nc, parseEnv(provisionEnv, {}));
      const TOTAL = 2000;
      const ACKED = 500;
      const js = nc.jetstream();
      await Promise.all(Array.from({ length: TOTAL }, (_, i) => js.publish(SUBJECTS.uploaded, Buffer.from(`{"i":${i}}`))));
      await restart(() => cpSync(msgsDir, beforeAcks, { recursive: true }));

      const seen = new Map<number, number>();
      const deliver = (seq: number) => seen.set(seq, (seen.get(seq) ?? 0) + 1);
      const consumer = await nc.jetstream().consumers.get(STREAMS.uploads, CONSUMERS.ingest);
      for await (const m of await consumer.fetch({ max_messages: ACKED, expires: 5000 })) {
        deliver(m.seq);
        await m.ackAck();
      }
      expect(seen.size).toBe(ACKED);
      expect((await jsm.streams.info(STREAMS.uploads)).state.first_seq).toBe(ACKED + 1);
      await restart(() => {
        rmSync(msgsDir, { recursive: true, force: true });
        cpSync(beforeAcks, msgsDir, { recursive: true });
      });

      const before = await jsm.streams.info(STREAMS.uploads);
      const floor = (await jsm.consumers.info(STREAMS.uploads, CONSUMERS.ingest)).ack_floor.stream_seq;
      expect(floor).toBe(ACKED);
      expect(before.state, 'the acknowledged messages are stored again').toMatchObject({ first_seq: 1, messages: TOTAL });

      // Several replicas sweeping at once: the floor only moves up, so they agree.
      const results = await Promise.all([1, 2, 3].map(() => purgeAcknowledged(jsm, STREAMS.uploads, CONSUMERS.ingest)));
      expect(results.reduce((n, r) => n + r.purged, 0)).toBe(ACKED);
      const after = await jsm.streams.info(STREAMS.uploads);
      expect(after.state).toMatchObject({ first_seq: ACKED + 1, messages: TOTAL - ACKED });
      expect((await purgeAcknowledged(jsm, STREAMS.uploads, CONSUMERS.ingest)).purged).toBe(0);

      // Nothing unacknowledged went: the rest is delivered as usual, each message once.
      const rest = await nc.jetstream().consumers.get(STREAMS.uploads, CONSUMERS.ingest);
      while (seen.size < TOTAL) {
        const batch = await rest.fetch({ max_messages: 500, expires: 2000 });
        let got = 0;
        for await (const m of batch) {
          deliver(m.seq);
          await m.ackAck();
          got++;
        }
        if (got === 0) break;
      }
      expect(seen.size).toBe(TOTAL);
      expect([...seen.values()].every((n) => n === 1)).toBe(true);
      expect((await jsm.streams.info(STREAMS.uploads)).state.messages).toBe(0);
    } finally {
      await nc.close();
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true }); // the restarted server does not own it
      rmSync(beforeAcks, { recursive: true, force: true });
    }
  }, 60_000);

  it('never removes a message that is unacknowledged, delivered or not, and leaves a clean queue alone', async () => {
    const { server, nc, jsm } = await natsWithClient();
    try {
      await provisionNats(nc, parseEnv(provisionEnv, {}));
      const js = nc.jetstream();
      for (let i = 1; i <= 5; i++) await js.publish(SUBJECTS.uploaded, Buffer.from(`{"i":${i}}`));
      const consumer = await js.consumers.get(STREAMS.uploads, CONSUMERS.ingest);
      const got = [];
      for await (const m of await consumer.fetch({ max_messages: 4, expires: 2000 })) got.push(m);
      // Acked out of order: 1 and 3. 2 and 4 are in progress, 5 was never delivered.
      for (const m of [got[0], got[2]]) await m.ackAck();
      const [uploads, telemetry] = await sweepWorkQueues(jsm);
      expect(uploads).toMatchObject({ ackFloor: 1, purged: 0 });
      expect(telemetry).toMatchObject({ purged: 0 });
      const si = await jsm.streams.info(STREAMS.uploads);
      expect({ first: si.state.first_seq, messages: si.state.messages }).toEqual({ first: 2, messages: 3 });
      for (const seq of [2, 4, 5]) expect((await jsm.streams.getMessage(STREAMS.uploads, { seq })).seq).toBe(seq);
    } finally {
      await nc.close();
      await server.stop();
    }
  });
});

describe('back-pressure at the edge', () => {
  let stack: Stack;
  beforeAll(async () => {
    // No workers: nothing drains the queue. Small parts, so one file is many events.
    stack = await startStack({ ingestWorkers: 0, collectWorkers: 0, httpFunctions: ['upload'], env: { UPLOAD_PART_BYTES: String(64 * 1024) } });
  }, 120_000);
  afterAll(async () => stack?.stop(), 60_000);

  /**
   * node:http rather than fetch: the refusal comes while the body is still being sent, and
   * fetch reports the server's early answer as a connection error instead of returning it.
   */
  const upload = (body: Buffer | string) =>
    new Promise<{ status: number; retryAfter?: string; body: any }>((resolve, reject) => {
      const data = Buffer.from(body);
      const req = request(`${stack.uploadUrl}/api/v1/uploads`, { method: 'POST', headers: { 'content-type': 'text/csv', 'content-length': data.length } }, (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'] as string | undefined, body: JSON.parse(text) }));
      });
      req.on('error', reject);
      req.end(data);
    });

  it('upload answers 503 with Retry-After while the upload queue or the object store is full', async () => {
    const nc = await connect({ servers: stack.nats.url });
    const jsm = await nc.jetstreamManager();
    const js = nc.jetstream();
    // A small file: the whole body is read before the refusal, so the answer is never cut off.
    const small = readFileSync(FIXTURE, 'utf8').split('\n').slice(0, 5).join('\n') + '\n';
    try {
      // The queue holds 10 parts and 10 are waiting.
      await provisionAll({ ...process.env, ...stack.env, UPLOADS_STREAM_MAX_MSGS: '10' });
      for (let i = 0; i < 10; i++) await js.publish(SUBJECTS.uploaded, Buffer.from(`{"waiting":${i}}`));
      const queueFull = await upload(small);
      expect(queueFull.status).toBe(503);
      expect(queueFull.retryAfter).toMatch(/^\d+$/);
      expect(queueFull.body.error.code).toBe('unavailable');
      // Nothing was dropped to make room.
      expect((await jsm.streams.info(STREAMS.uploads)).state.messages).toBe(10);
      await jsm.streams.purge(STREAMS.uploads);

      // The object store bounded at 1 MiB and filled up.
      await provisionAll({ ...process.env, ...stack.env, UPLOAD_STORE_MAX_BYTES: String(1024 ** 2) });
      const filler = `$O.${BUCKETS.objects}.C.filler`;
      for (const size of [64 * 1024, 1024, 16]) while (await js.publish(filler, Buffer.alloc(size)).then(() => true, () => false));
      const storeFull = await upload(small);
      expect(storeFull.status).toBe(503);
      expect(storeFull.retryAfter).toMatch(/^\d+$/);

      // Room again: the same process takes the upload.
      await jsm.streams.purge(objectStream(BUCKETS.objects), { filter: filler });
      await provisionAll({ ...process.env, ...stack.env });
      expect((await upload(small)).status).toBe(202);
      expect(stack.processes.every((p) => p.process.exitCode === null)).toBe(true);
    } finally {
      await nc.close();
    }
  }, 120_000);
});
