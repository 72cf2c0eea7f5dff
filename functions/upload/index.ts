import * as functions from '@google-cloud/functions-framework';
import { hostname } from 'node:os';
import { Readable } from 'node:stream';
import type { NatsConnection } from 'nats';
import { parseEnv } from '../../shared/config.ts';
import { withCors } from '../../shared/cors.ts';
import { HttpError, annotate, authorize, operationalRoutes, router, sendJson, type HttpHandler, type Req, type Res } from '../../shared/http.ts';
import { BUCKETS } from '../../shared/names.ts';
import { natsReadiness, sharedNats } from '../../shared/nats.ts';
import { validateRequest } from '../../shared/params.ts';
import { uploadEnv, type UploadConfig } from './config.ts';
import { reapIfExpired, startReaper } from './reaper.ts';
import { createReceive } from './receive.ts';
import { statusQuery, uploadPathParams, type UploadStatus } from './schemas.ts';
import { readStatus } from './status.ts';

// upload (HTTP): streams a CSV body (raw, gzip, or the multipart field `file`) into the JetStream
// object store as line-aligned parts, records the upload in KV under a lease, and publishes one
// `csv.uploaded` CloudEvent per part (receive.ts). GET /api/v1/uploads/{id} reports its status.

export function createUploadHandler(cfg: UploadConfig, getNats: () => Promise<NatsConnection>): HttpHandler {
  const owner = `${hostname()}/${process.pid}`;
  const readUploadStatus = async (id: string, reasons = cfg.UPLOAD_STATUS_REASONS): Promise<UploadStatus | undefined> => {
    const nc = await getNats();
    const js = nc.jetstream();
    const kv = await js.views.kv(BUCKETS.status);
    // An upload whose receiver died is ended here at once rather than at the next sweep.
    await reapIfExpired(nc, kv, id, cfg.UPLOAD_LEASE_MS);
    return readStatus(kv, await js.views.kv(BUCKETS.progress), id, reasons);
  };
  const receive = createReceive({ cfg, getNats, owner, status: (id) => readUploadStatus(id) });

  async function status(req: Req, res: Res, params: Record<string, string>, url: URL) {
    annotate(res, { upload_id: params.id?.slice(0, 64) });
    const denied = authorize(req, cfg.API_TOKENS, 'upload') && authorize(req, cfg.API_TOKENS, 'read');
    if (denied) throw denied;
    const { path, query } = validateRequest({ schema: uploadPathParams, values: params }, { schema: statusQuery, url });
    const result = await readUploadStatus(path.id, query.reasons);
    if (!result) throw new HttpError(404, 'not_found', `no upload with id ${path.id}`);
    sendJson(res, 200, result);
  }

  const routes = router(
    [
      {
        method: 'POST',
        path: '/api/v1/uploads',
        handle: (req, res, _p, url) => {
          const denied = authorize(req, cfg.API_TOKENS, 'upload');
          if (denied) throw denied;
          return receive(req, res, url);
        },
      },
      { method: 'GET', path: '/api/v1/uploads/{id}', handle: status },
      ...operationalRoutes(() => natsReadiness(getNats), 'upload'),
    ],
    { name: 'upload' },
  );
  // The console (query's origin) uploads from the browser and follows the status.
  return withCors(routes, {
    origins: cfg.UPLOAD_CORS_ORIGINS,
    methods: ['GET', 'POST'],
    headers: ['authorization', 'content-type', 'content-encoding', 'idempotency-key'],
    exposeHeaders: ['location', 'retry-after'],
  });
}

let handler: HttpHandler | undefined;
/** The handler configured from the environment, and this replica's reaper (both created once). */
export function uploadFunction(): HttpHandler {
  if (!handler) {
    const cfg = parseEnv(uploadEnv);
    const getNats = () => sharedNats('upload');
    handler = createUploadHandler(cfg, getNats);
    startReaper(getNats, { leaseMs: cfg.UPLOAD_LEASE_MS, intervalMs: cfg.UPLOAD_REAP_INTERVAL_MS });
  }
  return handler;
}
export const uploadHandler = (req: Req, res: Res) => uploadFunction()(req, res);

// Under the Functions Framework the body arrives pre-buffered (its body-parser reads it all);
// the handler then streams from that buffer. Production uses main.ts, which streams.
functions.http('upload', (req, res) => {
  const body = (req as unknown as { rawBody?: Buffer }).rawBody;
  if (body && req.method === 'POST') {
    const replay = Readable.from([body]) as unknown as Req;
    Object.assign(replay, { headers: req.headers, method: req.method, url: req.url });
    return uploadHandler(replay, res);
  }
  return uploadHandler(req, res);
});
