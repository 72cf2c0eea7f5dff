import * as functions from '@google-cloud/functions-framework';
import type { ClickHouseClient } from '@clickhouse/client';
import { randomBytes } from 'node:crypto';
import type { NatsConnection } from 'nats';
import { clickhouseReadiness, sharedClickHouse } from '../../shared/clickhouse.ts';
import { parseEnv } from '../../shared/config.ts';
import { HttpError, authorize, operationalRoutes, router, sendJson, sendJsonText, type HttpHandler, type NotReady, type Req, type Res } from '../../shared/http.ts';
import { natsReadiness, sharedNats } from '../../shared/nats.ts';
import { consoleEnv, flagEnv, limitsOf, queryEnv, type FlagConfig, type QueryConfig } from './config.ts';
import { fleetRoutes, fleetService } from './fleet.ts';
import { metricPathParams } from './fleet-schemas.ts';
import { graphqlRoutes, type Reads } from './graphql.ts';
import { cursorFingerprint, cursorSigner, encodeCursor, type CursorScope } from './cursor.ts';
import { ConsoleAssets, contentSecurityPolicy, defaultConsoleDir } from './assets.ts';
import { LiveRelay } from './live.ts';
import { pipelineState } from './pipeline.ts';
import { buildOpenApi } from './openapi.ts';
import { invalidParameters, validateRequest } from './params.ts';
import { checkWindow, gpuNotFound, untilClientLeaves } from './requests.ts';
import { gpuPathParams, liveGpuQuery, liveMetricQuery, noQuery, seriesQuery, summaryQuery, telemetryQuery, uploadPathParams, type SummaryQuery, type TelemetryQuery } from './schemas.ts';
import { gpuSeries } from './series.ts';
import { gpuExists, gpuSummary, listMetrics, telemetryPage, type SampleRow } from './sql.ts';
import { uploadDuplicates } from './uploads.ts';

// query (HTTP): the read API over ClickHouse. Parameters are validated first (400 naming the
// parameter, even for an unknown GPU), then existence (404 for a GPU never seen), then the data
// (200, possibly empty). Listings read the aggregate tables, never the samples table.

export interface QueryDeps {
  clickhouse: () => ClickHouseClient;
  /** Only for readiness: the pipeline is not usable without NATS even though reads are not. */
  nats: () => Promise<NatsConnection>;
}
export type QueryHandlerConfig = Pick<
  QueryConfig,
  'API_TOKENS' | 'QUERY_DEFAULT_LIMIT' | 'QUERY_MAX_LIMIT' | 'CURSOR_SECRET' | 'CURSOR_SECRET_PREVIOUS' | 'CURSOR_MAX_AGE_S'
> &
  Partial<Pick<QueryConfig, keyof typeof consoleEnv.shape>> &
  Partial<FlagConfig>;

const READY_TIMEOUT_MS = 3000;

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** A telemetry answer whose samples are JSON bytes (as ClickHouse wrote them). */
interface TelemetryBytes {
  uuid: string;
  filters: { start_time: string | null; end_time: string | null; metric: string | null; limit: number };
  count: number;
  data: Buffer[];
  next_cursor: string | null;
}

const COMMA = Buffer.from(',');

/** The JSON of a telemetry answer, as bytes: what JSON.stringify gives for it with its samples parsed. */
function telemetryJson(t: TelemetryBytes): Buffer {
  const head = JSON.stringify({ uuid: t.uuid, filters: t.filters, count: t.count });
  const pieces: Buffer[] = [Buffer.from(`${head.slice(0, -1)},"data":[`)];
  t.data.forEach((row, i) => (i === 0 ? pieces.push(row) : pieces.push(COMMA, row)));
  pieces.push(Buffer.from(`],"next_cursor":${JSON.stringify(t.next_cursor)}}`));
  return Buffer.concat(pieces);
}

export function createQueryHandler(cfg: QueryHandlerConfig, deps: QueryDeps): HttpHandler & { close(): Promise<void> } {
  const limits = limitsOf(cfg);
  const cursors = cursorSigner(
    // No secret: a random one, so cursors are still unforgeable (main.ts warns they die with the process).
    { current: cfg.CURSOR_SECRET ?? randomBytes(32).toString('base64url'), previous: cfg.CURSOR_SECRET_PREVIOUS },
    { maxAgeMs: cfg.CURSOR_MAX_AGE_S * 1000 },
  );
  const telemetryParams = telemetryQuery(limits, cursors);
  // What the caller set overrides the documented defaults (flag thresholds, console settings).
  const given = Object.fromEntries(Object.entries(cfg).filter(([, v]) => v !== undefined)) as Partial<QueryHandlerConfig>;
  const fleet = fleetService({ ...flagEnv.parse({}), ...given }, deps.clickhouse, cursors);
  let openapi: string | undefined;
  const consoleCfg = { ...consoleEnv.parse({}), ...given };
  const assets = new ConsoleAssets(consoleCfg.CONSOLE_DIR ?? defaultConsoleDir());
  const uploadOrigin = consoleCfg.UPLOAD_PUBLIC_URL ? new URL(consoleCfg.UPLOAD_PUBLIC_URL).origin : undefined;
  const csp = contentSecurityPolicy(uploadOrigin ? [uploadOrigin] : []);
  const live = new LiveRelay(
    {
      maxClients: consoleCfg.LIVE_MAX_CLIENTS,
      maxPending: consoleCfg.LIVE_MAX_PENDING,
      resumeWindowMs: consoleCfg.LIVE_RESUME_WINDOW_MS,
      ringSize: consoleCfg.LIVE_RING_SIZE,
      heartbeatMs: consoleCfg.LIVE_HEARTBEAT_MS,
      maxRows: consoleCfg.LIVE_MAX_ROWS,
    },
    deps,
  );

  const needRead = (req: Req) => {
    const denied = authorize(req, cfg.API_TOKENS, 'read');
    if (denied) throw denied;
  };

  /** One page of a GPU's samples, each sample still ClickHouse's JSON bytes (REST sends them as they are). */
  async function telemetryBytes(uuid: string, query: TelemetryQuery, signal?: AbortSignal): Promise<TelemetryBytes> {
    checkWindow(query);
    const scope: CursorScope = { uuid, start: query.start_time, end: query.end_time, metric: query.metric };
    if (query.cursor && query.cursor.fingerprint !== cursorFingerprint(scope)) {
      throw invalidParameters([
        { parameter: 'cursor', in: 'query', message: 'belongs to a different query (uuid, start_time, end_time and metric must stay the same between pages)' },
      ]);
    }
    const limit = query.limit ?? limits.defaultLimit;
    const ch = deps.clickhouse();
    const page = await telemetryPage(ch, scope, { limit, after: query.cursor?.key }, signal);
    if (page.data.length === 0 && !(await gpuExists(ch, uuid, signal))) throw gpuNotFound(uuid);
    return {
      uuid,
      filters: { start_time: iso(query.start_time), end_time: iso(query.end_time), metric: query.metric ?? null, limit },
      count: page.data.length,
      data: page.data,
      next_cursor: page.next ? encodeCursor(cursors, page.next, scope) : null,
    };
  }

  // The answers, shared by the REST routes below and GraphQL (graphql.ts).
  const reads: Reads = {
    async telemetry(uuid: string, query: TelemetryQuery, signal?: AbortSignal) {
      const t = await telemetryBytes(uuid, query, signal);
      return { ...t, data: t.data.map((row) => JSON.parse(row.toString()) as SampleRow) };
    },

    async summary(uuid: string, query: SummaryQuery, signal?: AbortSignal) {
      checkWindow(query);
      const ch = deps.clickhouse();
      const metrics = await gpuSummary(ch, { uuid, start: query.start_time, end: query.end_time, metric: query.metric }, signal);
      if (metrics.length === 0 && !(await gpuExists(ch, uuid, signal))) throw gpuNotFound(uuid);
      return {
        uuid,
        filters: { start_time: iso(query.start_time), end_time: iso(query.end_time), metric: query.metric ?? null },
        count: metrics.length,
        metrics,
      };
    },

    async metrics(signal?: AbortSignal) {
      const rows = await listMetrics(deps.clickhouse(), signal);
      return { metrics: rows, count: rows.length };
    },

    exists: (uuid: string, signal?: AbortSignal) => gpuExists(deps.clickhouse(), uuid, signal),
    series: (uuid, query, signal) => {
      checkWindow(query);
      return gpuSeries(deps.clickhouse(), uuid, query, signal);
    },
  };

  async function telemetry(req: Req, res: Res, params: Record<string, string>, url: URL) {
    needRead(req);
    const { path, query } = validateRequest({ schema: gpuPathParams, values: params }, { schema: telemetryParams, url });
    sendJsonText(res, 200, telemetryJson(await untilClientLeaves(res, (signal) => telemetryBytes(path.uuid, query, signal))));
  }

  async function summary(req: Req, res: Res, params: Record<string, string>, url: URL) {
    needRead(req);
    const { path, query } = validateRequest({ schema: gpuPathParams, values: params }, { schema: summaryQuery, url });
    sendJson(res, 200, await untilClientLeaves(res, (signal) => reads.summary(path.uuid, query, signal)));
  }

  async function series(req: Req, res: Res, params: Record<string, string>, url: URL) {
    needRead(req);
    const { path, query } = validateRequest({ schema: gpuPathParams, values: params }, { schema: seriesQuery, url, repeatable: ['metric'] });
    sendJson(res, 200, await untilClientLeaves(res, (signal) => reads.series(path.uuid, query, signal)));
  }

  async function duplicates(req: Req, res: Res, params: Record<string, string>, url: URL) {
    needRead(req);
    const { path } = validateRequest({ schema: uploadPathParams, values: params }, { schema: noQuery, url });
    sendJson(res, 200, await untilClientLeaves(res, (signal) => uploadDuplicates(deps.clickhouse(), path.id, signal)));
  }

  async function metrics(req: Req, res: Res, url: URL) {
    needRead(req);
    validateRequest({ schema: noQuery, values: {} }, { schema: noQuery, url });
    sendJson(res, 200, await untilClientLeaves(res, (signal) => reads.metrics(signal)));
  }

  function document(req: Req, res: Res) {
    needRead(req);
    // Served with this deployment's limits, so the documented maximum is the enforced one.
    openapi ??= JSON.stringify(buildOpenApi(limits));
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(openapi) });
    res.end(openapi);
  }

  /** What the console needs before it can call anything (no token needed: it says whether one is). */
  function consoleConfig(_req: Req, res: Res, url: URL) {
    validateRequest({ schema: noQuery, values: {} }, { schema: noQuery, url });
    sendJson(res, 200, {
      auth: cfg.API_TOKENS.size ? 'bearer' : 'none',
      upload_url: consoleCfg.UPLOAD_PUBLIC_URL?.replace(/\/$/, '') ?? null,
      live: { resume_window_seconds: Math.round(consoleCfg.LIVE_RESUME_WINDOW_MS / 1000), heartbeat_seconds: consoleCfg.LIVE_HEARTBEAT_MS / 1000 },
      limits: { max_limit: limits.maxLimit },
    }, { 'cache-control': 'no-store' });
  }

  async function pipeline(req: Req, res: Res, url: URL) {
    needRead(req);
    validateRequest({ schema: noQuery, values: {} }, { schema: noQuery, url });
    await live.start();
    const state = await pipelineState(await deps.nats(), {
      rows: live.rowsPerSecond(),
      liveClients: live.clientCount,
      autoscalerFile: consoleCfg.AUTOSCALER_STATUS_FILE,
    });
    sendJson(res, 200, state, { 'cache-control': 'no-store' });
  }

  async function openLive(req: Req, res: Res, filter: { uuid?: string; metrics: string[] }) {
    if (live.full()) {
      res.setHeader('retry-after', '10');
      throw new HttpError(503, 'too_many_live_clients', `this replica already serves ${consoleCfg.LIVE_MAX_CLIENTS} live connections (LIVE_MAX_CLIENTS)`);
    }
    await live.start();
    const last = req.headers['last-event-id'];
    live.attach(res, filter, typeof last === 'string' ? last.slice(0, 64) : undefined);
  }

  async function gpuLive(req: Req, res: Res, params: Record<string, string>, url: URL) {
    needRead(req);
    const { path, query } = validateRequest({ schema: gpuPathParams, values: params }, { schema: liveGpuQuery, url });
    // No 404 for a GPU never seen: watching for its first samples is a valid use.
    await openLive(req, res, { uuid: path.uuid, metrics: query.metric ?? [] });
  }

  async function metricLive(req: Req, res: Res, params: Record<string, string>, url: URL) {
    needRead(req);
    const { path } = validateRequest({ schema: metricPathParams, values: params }, { schema: liveMetricQuery, url });
    await openLive(req, res, { metrics: [path.metric] });
  }

  const ready = async (): Promise<NotReady[]> => {
    // NATS too: the pipeline is not usable without it even though reads are not.
    const checks = await Promise.all([clickhouseReadiness(deps.clickhouse(), READY_TIMEOUT_MS), natsReadiness(deps.nats, READY_TIMEOUT_MS)]);
    return checks.flat();
  };

  const handler = router(
    [
      ...fleetRoutes(fleet, cursors, needRead),
      ...graphqlRoutes({ fleet, reads, cursors, limits }, needRead),
      { method: 'GET', path: '/api/v1/gpus/{uuid}/telemetry', handle: telemetry },
      { method: 'GET', path: '/api/v1/gpus/{uuid}/summary', handle: summary },
      { method: 'GET', path: '/api/v1/gpus/{uuid}/series', handle: series },
      { method: 'GET', path: '/api/v1/uploads/{id}/duplicates', handle: duplicates },
      { method: 'GET', path: '/api/v1/metrics', handle: (req, res, _p, url) => metrics(req, res, url) },
      { method: 'GET', path: '/api/v1/gpus/{uuid}/live', handle: gpuLive },
      { method: 'GET', path: '/api/v1/metrics/{metric}/live', handle: metricLive },
      { method: 'GET', path: '/api/v1/pipeline', handle: (req, res, _p, url) => pipeline(req, res, url) },
      { method: 'GET', path: '/api/v1/console/config', handle: (req, res, _p, url) => consoleConfig(req, res, url) },
      { method: 'GET', path: '/openapi.json', handle: document },
      // The console and the API reference (Swagger UI): static files, no token needed to load them.
      { method: 'GET', path: '/', handle: (req, res) => assets.send(req, res, 'index.html', csp) },
      { method: 'GET', path: '/docs', handle: (req, res) => assets.send(req, res, 'docs.html', csp) },
      { method: 'GET', path: '/assets/{name}', handle: (req, res, p) => assets.send(req, res, `assets/${p.name}`, csp, 'immutable') },
      ...operationalRoutes(ready, 'query'),
    ],
    { name: 'query' },
  );
  return Object.assign(handler, { close: () => live.stop() });
}

let handler: ReturnType<typeof createQueryHandler> | undefined;
/** The handler configured from the environment (created on first use). */
export function queryHandler(req: Req, res: Res) {
  handler ??= createQueryHandler(parseEnv(queryEnv), {
    clickhouse: () => sharedClickHouse().client,
    nats: () => sharedNats('query'),
  });
  return handler(req, res);
}

/** Ends live streams (they would hold the HTTP server open while it drains). */
export async function closeQueryHandler(): Promise<void> {
  await handler?.close();
}

functions.http('query', queryHandler);
