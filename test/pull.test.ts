import { createHash, randomBytes } from 'node:crypto';
import { connect, type JsMsg, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseEnv } from '../shared/config.ts';
import { CONSUMERS, STREAMS, SUBJECTS } from '../shared/names.ts';
import { provisionEnv, provisionNats } from '../shared/provision.ts';
import { BoundedPull } from '../shared/pull.ts';
import { waitFor } from './support/ports.ts';
import { startNats, type NatsServer } from './support/servers.ts';

// Pulls bounded by bytes and messages against a real nats-server: a slow consumer never holds
// more than its budget (the defect: collect buffered the stream past nats-server's 64 MiB
// per-client pending buffer), and every message is still delivered once.

let server: NatsServer;
let nc: NatsConnection;

beforeAll(async () => {
  server = await startNats();
  nc = await connect({ servers: server.url });
  await provisionNats(nc, parseEnv(provisionEnv, {}));
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

describe('BoundedPull', () => {
  it('holds at most its byte budget with a slow handler, and delivers every message once', async () => {
    const js = nc.jetstream();
    const MB = 1024 * 1024;
    for (let i = 0; i < 24; i++) await js.publish(SUBJECTS.samples, Buffer.alloc(MB, i), { msgID: `bounded-${i}` });
    const pull = new BoundedPull(nc, STREAMS.telemetry, CONSUMERS.collect, { maxMessages: 100, maxBytes: 4 * MB });
    const seen: number[] = [];
    let maxHeld = 0;
    try {
      for (let handled = 0; handled < 24; ) {
        const batch: JsMsg[] = [];
        // Take what is there (at least one), then hold it for a while, as a slow insert would.
        batch.push((await pull.next()).value as JsMsg);
        await new Promise((r) => setTimeout(r, 50));
        maxHeld = Math.max(maxHeld, pull.held().bytes);
        expect(pull.held().bytes).toBeLessThanOrEqual(4 * MB);
        for (const m of batch) {
          seen.push(m.data[0]);
          m.ack();
        }
        pull.release(batch);
        handled += batch.length;
      }
    } finally {
      pull.close();
    }
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 24 }, (_, i) => i));
    expect(maxHeld).toBeGreaterThan(MB); // it did pull ahead, within the budget
    const jsm = await nc.jetstreamManager();
    await waitFor(async () => {
      const info = await jsm.consumers.info(STREAMS.telemetry, CONSUMERS.collect);
      return info.num_pending === 0 && info.num_ack_pending === 0;
    }, 'all acked', 10_000);
  });

  it('reuses the payload copies of released messages: every payload still reads as it was published', async () => {
    const js = nc.jetstream();
    // Sizes across several pool classes, published in an order that makes reused buffers
    // serve payloads of other sizes.
    const sizes = Array.from({ length: 60 }, (_, i) => [5_000, 60_000, 70_000, 300_000][i % 4] + i);
    const digest = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
    const published = new Map<string, string>();
    for (const [i, size] of sizes.entries()) {
      const body = randomBytes(size);
      published.set(`reuse-${i}`, digest(body));
      await js.publish(SUBJECTS.samples, body, { msgID: `reuse-${i}` });
    }
    const pull = new BoundedPull(nc, STREAMS.telemetry, CONSUMERS.collect, { maxMessages: 8, maxBytes: 1024 * 1024 });
    const backing = new Set<ArrayBufferLike>();
    let reused = 0;
    try {
      for (let handled = 0; handled < sizes.length; handled++) {
        const m = (await pull.next()).value as JsMsg;
        if (backing.has(m.data.buffer)) reused++;
        backing.add(m.data.buffer);
        expect(digest(m.data), `payload of ${m.headers?.get('Nats-Msg-Id')}`).toBe(published.get(m.headers?.get('Nats-Msg-Id') ?? ''));
        m.ack();
        pull.release([m], true);
      }
    } finally {
      pull.close();
    }
    expect(reused).toBeGreaterThan(sizes.length / 2);
  });

  it('holds at most maxMessages, and ends its iterator on close()', async () => {
    const js = nc.jetstream();
    for (let i = 0; i < 10; i++) await js.publish(SUBJECTS.samples, Buffer.from(`m${i}`), { msgID: `count-${i}` });
    const pull = new BoundedPull(nc, STREAMS.telemetry, CONSUMERS.collect, { maxMessages: 3, maxBytes: 1024 * 1024 });
    const first = await pull.next();
    await new Promise((r) => setTimeout(r, 300));
    expect(pull.held().messages).toBeLessThanOrEqual(3);
    (first.value as JsMsg).ack();
    pull.release([first.value as JsMsg]);
    pull.close();
    // What was delivered is still handed out after close (the drain), then the iterator ends.
    const rest: JsMsg[] = [];
    for (let r = await pull.next(); !r.done; r = await pull.next()) rest.push(r.value);
    expect(rest.length).toBeLessThanOrEqual(3);
    for (const m of rest) m.ack();
  });
});
