import { readFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { CloudEvent } from 'cloudevents';
import { connect, type JetStreamManager, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ingestEnv } from '../functions/ingest/config.ts';
import { ingestPart } from '../functions/ingest/index.ts';
import { NATS, toNatsHeaders } from '../shared/cloudevents-nats.ts';
import { ConfigError, parseEnv, type WorkerConfig } from '../shared/config.ts';
import { EventLoopPacer, heartbeatProblem } from '../shared/heartbeat.ts';
import { CONSUMERS, EVENT_TYPES, STREAMS, SUBJECTS } from '../shared/names.ts';
import { provisionEnv, provisionNats } from '../shared/provision.ts';
import { startPullWorker } from '../shared/worker.ts';
import { generateCsv } from './bench/generate.ts';
import { repoRoot } from './local/stack.ts';
import { waitFor } from './support/ports.ts';
import { startNats, type NatsServer } from './support/servers.ts';

// Short ack_wait with heartbeats: a busy worker's messages (the one it handles and the one the
// client already pulled behind it) are never redelivered, however long the work takes; the
// check of heartbeat vs ack_wait at start; and a CPU-bound ingest part lets timers run.

const ACK_WAIT_MS = 5000;
const cfg: WorkerConfig = { WORKER_MAX_DELIVER: 3, WORKER_RETRY_BASE_MS: 100, WORKER_HTTP_PORT: 0, WORKER_HEARTBEAT_MS: 500, HTTP_HOST: '127.0.0.1' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let server: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  server = await startNats();
  nc = await connect({ servers: server.url });
  await provisionNats(nc, parseEnv(provisionEnv, { CONSUMER_ACK_WAIT_MS: String(ACK_WAIT_MS) }));
  jsm = await nc.jetstreamManager();
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

async function publish(n: number) {
  const event = new CloudEvent({ id: `hb-${n}`, source: '/test/heartbeat', type: EVENT_TYPES.uploaded, datacontenttype: 'application/json', data: { n } });
  const msg = NATS.binary(event);
  await nc.jetstream().publish(SUBJECTS.uploaded, msg.body, { headers: toNatsHeaders(msg) });
}

describe('heartbeats', () => {
  it('allows at most a third of ack_wait', () => {
    expect(heartbeatProblem(2000, 10_000)).toBeUndefined();
    expect(heartbeatProblem(3334, 10_000)).toMatch(/WORKER_HEARTBEAT_MS \(3334\).*CONSUMER_ACK_WAIT_MS/);
  });

  it('a worker whose heartbeat does not fit the consumer ack_wait refuses to start', async () => {
    const start = startPullWorker({
      nc,
      stream: STREAMS.uploads,
      consumer: CONSUMERS.ingest,
      cfg: { ...cfg, WORKER_HEARTBEAT_MS: ACK_WAIT_MS },
      maxMessages: 1,
      maxWaitMs: 100,
      handle: async () => undefined,
    });
    await expect(start).rejects.toThrow(ConfigError);
    await expect(start).rejects.toThrow(/WORKER_HEARTBEAT_MS/);
  });

  it('work longer than ack_wait is not redelivered: neither the batch in hand nor what the client pulled behind it', async () => {
    for (let n = 1; n <= 3; n++) await publish(n);
    const calls: { id: string; delivery: number }[] = [];
    // Two per batch: consume() pulls more while the first batch is handled, so hb-3 waits in the
    // client's buffer for the whole 2.5 x ack_wait.
    const worker = await startPullWorker({
      nc,
      stream: STREAMS.uploads,
      consumer: CONSUMERS.ingest,
      cfg,
      maxMessages: 2,
      maxWaitMs: 500,
      handle: async (events, msgs) => {
        events.forEach((e, i) => calls.push({ id: e.id, delivery: msgs[i].info.deliveryCount }));
        if (events.some((e) => e.id === 'hb-1')) await sleep(ACK_WAIT_MS * 2.5);
      },
      log: () => undefined,
    });
    await waitFor(async () => calls.length >= 3, 'all handled', 40_000, 50);
    // The handler is called before its batch is acked: wait for the acks to reach the server.
    let info = await jsm.consumers.info(STREAMS.uploads, CONSUMERS.ingest);
    await waitFor(
      async () => {
        info = await jsm.consumers.info(STREAMS.uploads, CONSUMERS.ingest);
        return info.num_pending + info.num_ack_pending === 0;
      },
      'all acked',
      10_000,
      50,
    );
    // A redelivery would show up as another call (same subscription) and in the counter.
    await sleep(1000);
    await worker.stop();
    expect(calls).toEqual([1, 2, 3].map((n) => ({ id: `hb-${n}`, delivery: 1 })));
    info = await jsm.consumers.info(STREAMS.uploads, CONSUMERS.ingest);
    expect(info.num_redelivered).toBe(0);
  }, 60_000);
});

describe('a CPU-bound ingest part', () => {
  let dir: string;
  beforeAll(() => void (dir = mkdtempSync(join(tmpdir(), 'hb-ingest-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('lets timers run while it parses data already in memory', async () => {
    const file = join(dir, 'part.csv');
    await generateCsv(join(repoRoot, 'test', 'fixtures', 'dcgm_metrics_20250718_134233.csv'), file, 200_000);
    const text = readFileSync(file);
    const nl = text.indexOf(10);
    const header = text.subarray(0, nl).toString().split(',');
    const body = text.subarray(nl + 1);
    const chunks: Buffer[] = [];
    for (let i = 0; i < body.length; i += 128 * 1024) chunks.push(body.subarray(i, i + 128 * 1024));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 20);
    const part = { uploadId: 'u', part: 0, object: 'o', header, firstLine: 2, bytes: body.length, restamp: false, receivedAt: Date.now() };
    const result = await ingestPart(parseEnv(ingestEnv, {}), part, Readable.from(chunks), async () => ({ stream: 's', seq: 1, duplicate: false, domain: '' }));
    clearInterval(timer);
    expect(result.accepted).toBeGreaterThanOrEqual(200_000);
    // Without pauses the timer cannot fire before the part is done (measured: 0 ticks in 6 s for
    // 200k rows); with them it fires every ~50 ms of parsing, which is over a second of work.
    expect(ticks).toBeGreaterThanOrEqual(3);
  }, 60_000);

  it('EventLoopPacer: due only after the busy time; busy slices with pauses let a timer run', async () => {
    const pacer = new EventLoopPacer(30, 1);
    const busy = (ms: number) => {
      const until = performance.now() + ms;
      while (performance.now() < until);
    };
    expect(pacer.due()).toBe(false);
    busy(40);
    expect(pacer.due()).toBe(true);
    await pacer.pause();
    expect(pacer.due()).toBe(false);
    let fired = false;
    setTimeout(() => (fired = true), 0);
    for (let slice = 0; slice < 4 && !fired; slice++) {
      busy(40);
      if (pacer.due()) await pacer.pause();
    }
    expect(fired).toBe(true);
  });
});
