import type { JetStreamManager, NatsConnection } from 'nats';

// Whether a JetStream consumer still has work: messages not yet delivered, or delivered and not
// yet acknowledged. Collect asks it of ingest's consumer, whose handling publishes the upload
// batches collect inserts: once ingest has none, no more can come, so the last batches of an
// upload need not wait COLLECT_MAX_WAIT_MS for company before their INSERT.

/** How long an answer is reused (a batch waiting for more asks every 25 ms). */
export const ACTIVITY_MAX_AGE_MS = 100;

/**
 * A synchronous view of `consumer`'s activity, refreshed in the background (one consumer info
 * request) when older than `maxAgeMs`: true while it has messages pending or unacknowledged, and
 * also while its last answer is older than that (an idle answer from before an upload must not end
 * the upload's first batch at once), until the first answer and after a failed one (then a batch
 * waits as it would without it).
 */
export function consumerActivity(nc: NatsConnection, stream: string, consumer: string, maxAgeMs = ACTIVITY_MAX_AGE_MS): () => boolean {
  let busy = true;
  let answeredAt = 0;
  let asking = false;
  let jsm: Promise<JetStreamManager> | undefined;
  const ask = async () => {
    asking = true;
    try {
      const info = await (await (jsm ??= nc.jetstreamManager())).consumers.info(stream, consumer);
      busy = info.num_pending + info.num_ack_pending > 0;
    } catch {
      busy = true;
      jsm = undefined;
    } finally {
      answeredAt = Date.now();
      asking = false;
    }
  };
  return () => {
    const fresh = Date.now() - answeredAt < maxAgeMs;
    if (!fresh && !asking) void ask();
    return busy || !fresh;
  };
}
