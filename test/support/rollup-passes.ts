import type { CloudEventV1 } from 'cloudevents';
import type { NatsConnection } from 'nats';
import { fromNatsMsg, toEventWithRawData } from '../../shared/cloudevents-nats.ts';
import { CONSUMERS, STREAMS } from '../../shared/names.ts';
import type { BatchOutcome } from '../../shared/worker.ts';

/**
 * Runs every rollup pass pending on ROLLUPS with `collect`, in one call and acked afterwards, as
 * collect's second consumer does in the worker. Returns how many pending events it took.
 */
export async function runPendingPasses(nc: NatsConnection, collect: (events: CloudEventV1<unknown>[]) => Promise<BatchOutcome>): Promise<number> {
  const consumer = await nc.jetstream().consumers.get(STREAMS.rollups, CONSUMERS.rollups);
  const msgs = [];
  for (let m = await consumer.next({ expires: 1000 }); m; m = await consumer.next({ expires: 1000 })) msgs.push(m);
  if (msgs.length === 0) return 0;
  const outcome = await collect(msgs.map((m) => toEventWithRawData(fromNatsMsg(m)) as CloudEventV1<unknown>));
  if (outcome.poison?.length) throw new Error(`rollup passes refused: ${outcome.poison.map((p) => p.reason).join('; ')}`);
  for (const m of msgs) m.ack();
  // Acks are fire-and-forget; flush so the next read of the stream sees them.
  await nc.flush();
  return msgs.length;
}
