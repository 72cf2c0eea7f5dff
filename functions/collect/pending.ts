import type { CloudEventV1 } from 'cloudevents';
import type { JetStreamClient } from 'nats';
import { z } from 'zod';
import { binaryMessage, toNatsHeaders } from '../../shared/cloudevents-nats.ts';
import { EVENT_SOURCES, EVENT_TYPES, SUBJECTS } from '../../shared/names.ts';
import { BATCH_ID } from '../../shared/sample-batch.ts';

// Rollup passes waiting to run. Once a group of batches is stored, collect queues one event on
// ROLLUPS listing them (and acks the batches); a pass takes every event pending, up to
// COLLECT_ROLLUP_MAX_ROWS rows or what arrives within COLLECT_ROLLUP_MAX_WAIT_MS, and recomputes
// the buckets of all their batches at once: a bucket many batches touched (every scrape of a live
// fleet touches the current minute, hour and day of each series) is read once per pass instead of
// once per batch (`npm run bench:rollups -- --coalesce K`). The queue is durable, so a crash only
// repeats a pass; the progress puts that make an upload `done` come after its pass.

export const PENDING_SOURCE = EVENT_SOURCES.collect;

export interface StoredBatch {
  id: string;
  rows: number;
}

const pendingSchema = z.object({
  batches: z
    .array(z.object({ id: z.string().regex(BATCH_ID).max(200), rows: z.number().int().min(0).max(1_000_000) }))
    .min(1)
    .max(5000),
});

/**
 * Queues the pass of `batches`; resolves once JetStream has stored the event. Its id is `token`,
 * a digest of the batch ids, so the event of a redelivered group is the same (and dropped).
 */
export async function queuePass(js: JetStreamClient, batches: StoredBatch[], token: string): Promise<void> {
  const id = `rollups.${token}`;
  const rows = batches.reduce((n, b) => n + b.rows, 0);
  const msg = binaryMessage(
    { id, source: PENDING_SOURCE, type: EVENT_TYPES.rollups, datacontenttype: 'application/json', rows: String(rows) },
    Buffer.from(JSON.stringify({ batches })),
  );
  await js.publish(SUBJECTS.rollups, msg.body, { headers: toNatsHeaders(msg), msgID: id });
}

/** The batches a pending-pass event lists, or why it is not one. */
export function pendingBatches(event: CloudEventV1<unknown>): StoredBatch[] | string {
  let data = event.data;
  if (data instanceof Uint8Array) {
    try {
      data = JSON.parse(Buffer.from(data).toString('utf8'));
    } catch {
      return 'rollup pass event data is not JSON';
    }
  }
  const parsed = pendingSchema.safeParse(data);
  if (!parsed.success) return `rollup pass event: ${parsed.error.issues[0]?.path.join('.') || 'data'}: ${parsed.error.issues[0]?.message}`;
  return parsed.data.batches;
}
