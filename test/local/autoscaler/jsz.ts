import { z } from 'zod';
import type { NatsJetStreamTrigger } from './scaledobject.ts';

// Reads consumer lag from the NATS monitoring endpoint exactly like KEDA's nats-jetstream scaler
// (pkg/scalers/nats_jetstream_scaler.go): GET /jsz?acc=<account>&config=true&consumers=true,
// pick account → stream → consumer, lag = num_pending + num_ack_pending. A missing consumer (or
// stream/account) is an error, as in KEDA ≥ 2.20. The clustered leader lookup is not needed for a
// single local server and is left out.

const consumerSchema = z.looseObject({
  name: z.string(),
  num_pending: z.number().default(0),
  num_ack_pending: z.number().default(0),
});

const jszSchema = z.looseObject({
  account_details: z
    .array(
      z.looseObject({
        name: z.string().default(''),
        id: z.string().default(''),
        stream_detail: z
          .array(z.looseObject({ name: z.string(), consumer_detail: z.array(consumerSchema).nullish() }))
          .nullish(),
      }),
    )
    .nullish(),
});

export type JszTarget = Pick<NatsJetStreamTrigger, 'monitoringEndpoint' | 'account' | 'accountID' | 'stream' | 'consumer' | 'useHttps'>;

export interface ConsumerLag {
  lag: number;
  numPending: number;
  numAckPending: number;
}

export function jszUrl(t: JszTarget): string {
  const scheme = t.useHttps ? 'https' : 'http';
  return `${scheme}://${t.monitoringEndpoint}/jsz?acc=${encodeURIComponent(t.accountID ?? t.account)}&config=true&consumers=true`;
}

/** Pick the consumer out of a /jsz response; throws the KEDA error when it is not there. */
export function lagFromJsz(body: unknown, t: JszTarget): ConsumerLag {
  const parsed = jszSchema.safeParse(body);
  if (!parsed.success) throw new Error(`unexpected /jsz response: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  const account = (parsed.data.account_details ?? []).find((a) => (t.accountID !== undefined && a.id === t.accountID) || a.name === t.account);
  const stream = account?.stream_detail?.find((s) => s.name === t.stream);
  const consumer = stream?.consumer_detail?.find((c) => c.name === t.consumer);
  if (!consumer) throw new Error(`consumer "${t.consumer}" not found in stream "${t.stream}"`);
  return { lag: consumer.num_pending + consumer.num_ack_pending, numPending: consumer.num_pending, numAckPending: consumer.num_ack_pending };
}

/** One poll. KEDA's HTTP client times out after 3 s (GlobalHTTPTimeout). */
export async function readConsumerLag(t: JszTarget, opts: { timeoutMs?: number; fetchImpl?: typeof fetch } = {}): Promise<ConsumerLag> {
  const url = jszUrl(t);
  const doFetch = opts.fetchImpl ?? fetch;
  let res: Response;
  try {
    res = await doFetch(url, { signal: AbortSignal.timeout(opts.timeoutMs ?? 3000) });
  } catch (e) {
    throw new Error(`GET ${url}: ${(e as Error).message}`);
  }
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return lagFromJsz(await res.json(), t);
}
