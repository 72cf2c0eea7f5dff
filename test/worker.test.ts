import { CloudEvent, type CloudEventV1 } from 'cloudevents';
import { connect, type JetStreamManager, type JsMsg, type NatsConnection, type StoredMsg } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NATS, fromNatsMsg, toNatsHeaders } from '../shared/cloudevents-nats.ts';
import { parseEnv, type WorkerConfig } from '../shared/config.ts';
import { CONSUMERS, EVENT_TYPES, STREAMS, SUBJECTS } from '../shared/names.ts';
import { provisionEnv, provisionNats } from '../shared/provision.ts';
import { PermanentError, retryDelayMs, startPullWorker, type BatchHandler, type BatchOutcome } from '../shared/worker.ts';
import { waitFor } from './support/ports.ts';
import { startNats, type NatsServer } from './support/servers.ts';

// The JetStream pull-worker runtime against a real nats-server with the provisioned streams and
// consumers: ack on success, nak with growing delay on failure, dead-letter after
// WORKER_MAX_DELIVER deliveries (or at once for permanent errors and non-events), drain on stop.

const BASE_MS = 100;
const cfg: WorkerConfig = { WORKER_MAX_DELIVER: 3, WORKER_RETRY_BASE_MS: BASE_MS, WORKER_HTTP_PORT: 0, WORKER_HEARTBEAT_MS: 2000, HTTP_HOST: '127.0.0.1' };
const STREAM = STREAMS.uploads;
const CONSUMER = CONSUMERS.ingest;

let server: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;
const logs: Record<string, unknown>[] = [];

beforeAll(async () => {
  server = await startNats();
  nc = await connect({ servers: server.url });
  // Long ack_wait: any redelivery seen here comes from the worker's nak, not from a timeout.
  await provisionNats(nc, parseEnv(provisionEnv, { WORKER_MAX_DELIVER: String(cfg.WORKER_MAX_DELIVER), CONSUMER_ACK_WAIT_MS: '30000' }));
  jsm = await nc.jetstreamManager();
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

let counter = 0;
async function publishEvent(data: unknown = { n: counter }) {
  const event = new CloudEvent({
    id: `test-${++counter}`,
    source: '/test/worker',
    type: EVENT_TYPES.uploaded,
    subject: `subject ${counter} é`,
    datacontenttype: 'application/json',
    data,
  });
  const msg = NATS.binary(event);
  const ack = await nc.jetstream().publish(SUBJECTS.uploaded, msg.body, { headers: toNatsHeaders(msg) });
  return { event, msg, seq: ack.seq };
}

interface Call {
  id: string;
  deliveryCount: number;
  at: number;
}

async function runWorker(handle: (e: CloudEventV1<unknown>, m: JsMsg) => Promise<BatchOutcome | void>) {
  const calls: Call[] = [];
  const handler: BatchHandler = async (events, msgs) => {
    expect(events).toHaveLength(1);
    calls.push({ id: events[0].id, deliveryCount: msgs[0].info.deliveryCount, at: Date.now() });
    return handle(events[0], msgs[0]);
  };
  const worker = await startPullWorker({ nc, stream: STREAM, consumer: CONSUMER, handle: handler, cfg, maxMessages: 1, maxWaitMs: 200, log: (l) => logs.push(l) });
  return { worker, calls };
}

async function deadLetters(): Promise<StoredMsg[]> {
  const info = await jsm.streams.info(STREAMS.deadLetter);
  const out: StoredMsg[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    out.push(await jsm.streams.getMessage(STREAMS.deadLetter, { seq }));
  }
  return out;
}

async function deadLetterFor(id: string): Promise<StoredMsg> {
  let found: StoredMsg | undefined;
  await waitFor(async () => {
    found = (await deadLetters()).find((m) => m.header.get('ce-id') === id);
    return !!found;
  }, `dead letter for ${id}`, 10_000, 50);
  return found!;
}

async function consumerIdle() {
  await nc.flush();
  await waitFor(async () => {
    const info = await jsm.consumers.info(STREAM, CONSUMER);
    return info.num_pending === 0 && info.num_ack_pending === 0;
  }, 'consumer lag 0', 5000, 50);
  const info = await jsm.consumers.info(STREAM, CONSUMER);
  expect(info.num_pending).toBe(0);
  expect(info.num_ack_pending).toBe(0);
}

/** A work-queue stream drops a message once it is acked or terminated. */
async function removedFromStream(seq: number): Promise<boolean> {
  return jsm.streams.getMessage(STREAM, { seq }).then(
    () => false,
    () => true,
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('retryDelayMs', () => {
  it('doubles per delivery from the base and is capped at 60 s', () => {
    expect([1, 2, 3, 4].map((d) => retryDelayMs(cfg, d))).toEqual([100, 200, 400, 800]);
    expect(retryDelayMs(cfg, 0)).toBe(100);
    expect(retryDelayMs(cfg, 30)).toBe(60_000);
  });
});

describe('startPullWorker', () => {
  it('acks a message the handler accepts', async () => {
    const { worker, calls } = await runWorker(async () => undefined);
    const { event, seq } = await publishEvent({ hello: 'world' });
    await waitFor(async () => calls.length === 1, 'handler call', 5000, 20);
    await consumerIdle();
    expect(await removedFromStream(seq)).toBe(true);
    await sleep(300);
    expect(calls).toEqual([expect.objectContaining({ id: event.id, deliveryCount: 1 })]);
    await worker.stop();
  });

  it('passes the decoded CloudEvent to the handler', async () => {
    let got: CloudEventV1<unknown> | undefined;
    const { worker } = await runWorker(async (e) => {
      got = e;
    });
    const { event } = await publishEvent({ part: 2, header: ['a', 'b'] });
    await waitFor(async () => !!got, 'handler call', 5000, 20);
    await worker.stop();
    expect(got).toMatchObject({ id: event.id, type: event.type, source: event.source, subject: event.subject, data: { part: 2, header: ['a', 'b'] } });
    await consumerIdle();
  });

  it('naks a failure with a growing delay and dead-letters it after WORKER_MAX_DELIVER deliveries', async () => {
    const { worker, calls } = await runWorker(async () => {
      throw new Error('boom: clickhouse unavailable');
    });
    const { event, msg, seq } = await publishEvent();
    const dead = await deadLetterFor(event.id);
    await consumerIdle();
    await worker.stop();

    expect(calls.map((c) => c.deliveryCount)).toEqual([1, 2, 3]);
    const gap1 = calls[1].at - calls[0].at;
    const gap2 = calls[2].at - calls[1].at;
    expect(gap1).toBeGreaterThanOrEqual(retryDelayMs(cfg, 1) - 10);
    expect(gap2).toBeGreaterThanOrEqual(retryDelayMs(cfg, 2) - 10);
    expect(gap2).toBeGreaterThan(gap1);

    expect(dead.subject).toBe(SUBJECTS.deadLetter(CONSUMER));
    expect(dead.header.get('x-dead-letter-reason')).toBe('boom: clickhouse unavailable');
    expect(dead.header.get('x-dead-letter-consumer')).toBe(CONSUMER);
    expect(dead.header.get('x-original-subject')).toBe(SUBJECTS.uploaded);
    expect(dead.header.get('x-original-stream-seq')).toBe(String(seq));
    expect(dead.header.get('x-deliveries')).toBe('3');
    for (const [name, value] of Object.entries(msg.headers)) expect(dead.header.get(name), name).toBe(value);
    expect(Buffer.from(dead.data).equals(Buffer.from(msg.body))).toBe(true);
    // The dead letter is still the original event.
    const back = NATS.toEvent(fromNatsMsg({ headers: dead.header, data: dead.data })) as CloudEvent<unknown>;
    expect(back.id).toBe(event.id);
    expect(back.subject).toBe(event.subject);
    expect(back.data).toEqual(event.data);

    // Terminated: gone from the work queue and not redelivered (a `+TERM <reason>` is ignored
    // by servers before 2.11 and would leave it ack-pending until ack_wait).
    expect(await removedFromStream(seq)).toBe(true);
    await sleep(4 * BASE_MS + 100);
    expect(calls).toHaveLength(3);
  });

  it('dead-letters a PermanentError on the first delivery', async () => {
    const { worker, calls } = await runWorker(async () => {
      throw new PermanentError('event data is not a csv.uploaded payload');
    });
    const { event, seq } = await publishEvent({ not: 'an upload' });
    const dead = await deadLetterFor(event.id);
    await consumerIdle();
    await sleep(2 * BASE_MS + 100);
    await worker.stop();
    expect(calls.map((c) => c.deliveryCount)).toEqual([1]);
    expect(dead.header.get('x-deliveries')).toBe('1');
    expect(dead.header.get('x-dead-letter-reason')).toBe('event data is not a csv.uploaded payload');
    expect(await removedFromStream(seq)).toBe(true);
  });

  it('dead-letters a message the handler reports as poison', async () => {
    const { worker, calls } = await runWorker(async () => ({ poison: [{ index: 0, reason: 'batch id is not <upload>.<part>.<seq>' }] }));
    const { event } = await publishEvent();
    const dead = await deadLetterFor(event.id);
    await consumerIdle();
    await worker.stop();
    expect(calls).toHaveLength(1);
    expect(dead.header.get('x-dead-letter-reason')).toBe('batch id is not <upload>.<part>.<seq>');
  });

  it('dead-letters a message that is not a CloudEvent without calling the handler', async () => {
    const { worker, calls } = await runWorker(async () => undefined);
    const before = (await deadLetters()).length;
    const ack = await nc.jetstream().publish(SUBJECTS.uploaded, Buffer.from('just some bytes'));
    await waitFor(async () => (await deadLetters()).length === before + 1, 'dead letter', 10_000, 50);
    await consumerIdle();
    await worker.stop();
    const dead = (await deadLetters()).at(-1)!;
    expect(calls).toHaveLength(0);
    expect(dead.subject).toBe(SUBJECTS.deadLetter(CONSUMER));
    expect(dead.header.get('x-dead-letter-reason')).toMatch(/^not a CloudEvent/);
    expect(dead.header.get('x-deliveries')).toBe('1');
    expect(dead.header.get('x-original-stream-seq')).toBe(String(ack.seq));
    expect(Buffer.from(dead.data).toString()).toBe('just some bytes');
    expect(await removedFromStream(ack.seq)).toBe(true);
  });

  it('stop() lets a running handler finish and acks its message', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const order: string[] = [];
    const { worker, calls } = await runWorker(async () => {
      order.push('handler started');
      await gate;
      order.push('handler finished');
    });
    const { seq } = await publishEvent();
    await waitFor(async () => calls.length === 1, 'handler call', 5000, 20);
    let stopped = false;
    const stopping = worker.stop().then(() => {
      order.push('stopped');
      stopped = true;
    });
    await sleep(300);
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect(order).toEqual(['handler started', 'handler finished', 'stopped']);
    await consumerIdle();
    expect(await removedFromStream(seq)).toBe(true);
    // Nothing is fetched after stop: a new message waits for the next worker.
    const next = await publishEvent();
    await sleep(300);
    expect(calls).toHaveLength(1);
    const info = await jsm.consumers.info(STREAM, CONSUMER);
    expect(info.num_pending).toBe(1);
    const { worker: w2, calls: calls2 } = await runWorker(async () => undefined);
    await waitFor(async () => calls2.length === 1, 'second worker call', 5000, 20);
    expect(calls2[0].id).toBe(next.event.id);
    await consumerIdle();
    await w2.stop();
  });

  it('stop() returns promptly when idle', async () => {
    const { worker } = await runWorker(async () => undefined);
    await sleep(100);
    const t0 = Date.now();
    await worker.stop();
    expect(Date.now() - t0).toBeLessThan(900);
  });
});
