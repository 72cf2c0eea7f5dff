import * as functions from '@google-cloud/functions-framework';
import { createHash } from 'node:crypto';
import type { NatsConnection } from 'nats';
import { parseEnv } from '../../shared/config.ts';
import { HttpError, annotate, authorize, operationalRoutes, router, type HttpHandler, type Req, type Res } from '../../shared/http.ts';
import { natsReadiness, sharedNats } from '../../shared/nats.ts';
import { requestBatches, DROP_REASONS } from './batches.ts';
import { checkHeaders, decompress, readBody } from './body.ts';
import { SeriesCache } from './labels.ts';
import { remoteWriteEnv, type RemoteWriteConfig } from './config.ts';
import { samplesAccepted, samplesDropped, samplesReceived } from './metrics.ts';
import { publishAll } from './publish.ts';

// remote-write (HTTP): a Prometheus remote-write 1.0 receiver. Each request's samples are mapped
// like CSV rows and published as sample batches to the telemetry stream (collect stores them).
// 204 only once every batch is in JetStream; 4xx (the sender drops the request) for requests
// that can never succeed; 503 with Retry-After while NATS is unavailable or the stream is full
// (the sender retries). Batch ids derive from the request content, so a retry stores nothing twice.

export const WRITE_PATH = '/api/v1/write';

export interface RemoteWriteDeps {
  nats: () => Promise<NatsConnection>;
}
export type RemoteWriteHandlerConfig = Pick<
  RemoteWriteConfig,
  | 'API_TOKENS'
  | 'REMOTE_WRITE_MAX_BYTES'
  | 'REMOTE_WRITE_MAX_DECODED_BYTES'
  | 'REMOTE_WRITE_BATCH_ROWS'
  | 'REMOTE_WRITE_SERIES_CACHE'
  | 'REMOTE_WRITE_PUBLISH_TIMEOUT_MS'
>;

export function createRemoteWriteHandler(cfg: RemoteWriteHandlerConfig, deps: RemoteWriteDeps): HttpHandler {
  const seriesCache = new SeriesCache(cfg.REMOTE_WRITE_SERIES_CACHE);
  async function write(req: Req, res: Res): Promise<void> {
    const receivedAt = Date.now();
    const denied = authorize(req, cfg.API_TOKENS, 'write');
    if (denied) throw denied;
    checkHeaders(req);
    let decoded: Buffer;
    try {
      decoded = decompress(await readBody(req, cfg.REMOTE_WRITE_MAX_BYTES), cfg.REMOTE_WRITE_MAX_DECODED_BYTES);
    } catch (e) {
      // Do not read the rest of an oversized body just to keep the connection.
      if (e instanceof HttpError && e.status === 413) res.setHeader('connection', 'close');
      throw e;
    }
    // Content-derived: a retried request (the same samples) gets the same batch ids.
    const sourceId = `rw-${createHash('sha256').update(decoded).digest('hex').slice(0, 32)}`;
    let mapped: ReturnType<typeof requestBatches>;
    try {
      mapped = requestBatches(decoded, { sourceId, receivedAt, batchRows: cfg.REMOTE_WRITE_BATCH_ROWS, series: seriesCache });
    } catch (e) {
      throw new HttpError(400, 'bad_protobuf', `the body is not a valid protobuf prometheus.WriteRequest (${e instanceof Error ? e.message : 'decode error'})`);
    }
    const dropped = DROP_REASONS.reduce((n, r) => n + mapped.dropped[r], 0);
    annotate(res, { source_id: sourceId, samples: mapped.received, accepted: mapped.accepted, dropped, ...(mapped.firstProblem ? { problem: mapped.firstProblem } : {}) });
    if (mapped.batches.length > 0) await publishAll(res, await deps.nats(), mapped.batches, cfg.REMOTE_WRITE_PUBLISH_TIMEOUT_MS);
    // Counted once the request succeeded, so a retried request is not counted twice.
    samplesReceived.inc(mapped.received);
    samplesAccepted.inc(mapped.accepted);
    for (const r of DROP_REASONS) if (mapped.dropped[r]) samplesDropped.inc({ reason: r }, mapped.dropped[r]);
    res.writeHead(204);
    res.end();
  }

  // A real round trip with a timeout; the answer names the dependency only (details are logged).
  const ready = () => natsReadiness(deps.nats);

  return router([{ method: 'POST', path: WRITE_PATH, handle: (req, res) => write(req, res) }, ...operationalRoutes(ready, 'remote-write')], { name: 'remote-write' });
}

let handler: HttpHandler | undefined;
/** The handler configured from the environment (created on first use). */
export function remoteWriteHandler(req: Req, res: Res) {
  handler ??= createRemoteWriteHandler(parseEnv(remoteWriteEnv), { nats: () => sharedNats('remote-write') });
  return handler(req, res);
}

// Registered for the Functions Framework, but its server's body-parser answers
// `Content-Encoding: snappy` with 415 before any handler runs; production (main.ts) serves the
// same handler with shared/http.ts serve(), which hands it the raw body.
functions.http('remote-write', remoteWriteHandler);
