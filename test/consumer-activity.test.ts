import { AckPolicy, connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consumerActivity } from '../shared/consumer-activity.ts';
import { waitFor } from './support/ports.ts';
import { startNats, type NatsServer } from './support/servers.ts';

// consumerActivity against a real nats-server: collect's batches of upload data stop waiting for
// company only once ingest's consumer has nothing pending or unacknowledged.

let server: NatsServer;
let nc: NatsConnection;

beforeAll(async () => {
  server = await startNats();
  nc = await connect({ servers: server.url });
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: 'WORK', subjects: ['work.>'] });
  await jsm.consumers.add('WORK', { durable_name: 'worker', ack_policy: AckPolicy.Explicit });
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

/** The view's answer once it has refreshed since now (it answers from its last refresh). */
async function settled(view: () => boolean, expected: boolean): Promise<void> {
  await waitFor(async () => view() === expected, `activity ${expected}`, 5000, 20);
}

describe('consumerActivity', () => {
  it('is busy until it has an answer, idle with nothing to do, busy while a message is pending or unacked', async () => {
    const view = consumerActivity(nc, 'WORK', 'worker', 20);
    expect(view()).toBe(true);
    await settled(view, false);

    const js = nc.jetstream();
    await js.publish('work.a', new TextEncoder().encode('one'));
    await settled(view, true);

    // Delivered, not yet acknowledged: still busy (its handler may still publish).
    const consumer = await js.consumers.get('WORK', 'worker');
    const msg = await consumer.next({ expires: 2000 });
    expect(msg).not.toBeNull();
    await new Promise((r) => setTimeout(r, 100));
    expect(view()).toBe(true);

    await msg!.ackAck();
    await settled(view, false);
  });

  it('counts an old idle answer as busy until it is asked again', async () => {
    const view = consumerActivity(nc, 'WORK', 'worker', 150);
    await settled(view, false);
    await new Promise((r) => setTimeout(r, 200));
    // Idle 200 ms ago: not a reason to stop waiting now (an upload may have started since).
    expect(view()).toBe(true);
    await settled(view, false);
  });

  it('answers busy when the consumer cannot be asked (a batch then waits as without it)', async () => {
    const view = consumerActivity(nc, 'WORK', 'no-such-consumer', 20);
    view();
    await new Promise((r) => setTimeout(r, 200));
    expect(view()).toBe(true);
  });
});
