import { Events, type NatsConnection } from 'nats';
import { HttpError, type Res } from '../../shared/http.ts';
import { EVENT_SOURCES } from '../../shared/names.ts';
import { publishSampleBatch, type EncodedBatch } from '../../shared/sample-batch.ts';
import { isTransient } from '../../shared/transient.ts';

// Publishing a request's batches, and how a NATS problem becomes a 503 the sender retries.

const SOURCE = EVENT_SOURCES.remoteWrite;

/** Seconds a sender should wait: a restarting NATS is back in seconds, a full stream drains slower. */
const RETRY_AFTER = { unavailable: '5', streamFull: '30' } as const;

// Whether a connection is up right now: a publish while the client reconnects would only wait
// for its timeout, so the request is answered 503 at once instead.
const links = new WeakMap<NatsConnection, { up: boolean }>();
export function linkUp(nc: NatsConnection): boolean {
  let link = links.get(nc);
  if (!link) {
    const state = { up: true };
    links.set(nc, (link = state));
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === Events.Disconnect) state.up = false;
        else if (s.type === Events.Reconnect) state.up = true;
      }
    })().catch(() => undefined);
  }
  return link.up && !nc.isClosed();
}

function unavailable(res: Res, code: string, message: string, retryAfter: string): HttpError {
  res.setHeader('retry-after', retryAfter);
  return new HttpError(503, code, message);
}

/** JetStream's answer for a stream at its limits with discard=new (nats.js keeps it in api_error). */
function streamFull(e: unknown): boolean {
  const err = e as { message?: string; api_error?: { description?: string }; chainedError?: { message?: string } } | undefined;
  return /maximum (messages|bytes) exceeded/i.test(`${err?.api_error?.description} ${err?.chainedError?.message} ${err?.message}`);
}

/** Publishes every batch and waits for all of them, so the answer reflects what JetStream holds. */
export async function publishAll(res: Res, nc: NatsConnection, batches: EncodedBatch[], timeoutMs: number): Promise<void> {
  if (!linkUp(nc)) throw unavailable(res, 'unavailable', 'NATS is unavailable; retry later', RETRY_AFTER.unavailable);
  const js = nc.jetstream();
  // Each publish has its own timeout; this deadline makes sure the sender gets an answer even if
  // the client library never settles one (seen with many large batches in flight).
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<PromiseSettledResult<unknown>[]>((resolve) => {
    timer = setTimeout(() => resolve([{ status: 'rejected', reason: Object.assign(new Error('publish deadline passed'), { code: 'TIMEOUT' }) }]), timeoutMs + 1000);
  });
  const results: PromiseSettledResult<unknown>[] = await Promise.race([Promise.allSettled(batches.map((b) => publishSampleBatch(js, b, SOURCE, timeoutMs))), deadline]).finally(() => clearTimeout(timer));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (!failure) return;
  const e = failure.reason as Error;
  if (streamFull(e)) {
    throw unavailable(res, 'stream_full', 'the telemetry stream is full; retry later', RETRY_AFTER.streamFull);
  }
  if (isTransient(e)) throw unavailable(res, 'unavailable', 'NATS did not confirm the samples; retry later', RETRY_AFTER.unavailable);
  throw e;
}
