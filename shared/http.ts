import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { HttpConfig, Scope } from './config.ts';
import { loggerFor } from './log.ts';
import { httpRequestDuration, metricsText } from './metrics.ts';
import { isTransient } from './transient.ts';

// Plain node:http request/response types, so a handler runs unchanged under the Functions
// Framework (whose Express objects extend these) and under our streaming server below.
export type Req = IncomingMessage;
export type Res = ServerResponse;
export type HttpHandler = (req: Req, res: Res) => unknown;

export function sendJson(res: Res, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  sendJsonText(res, status, JSON.stringify(body), headers);
}

/** sendJson for a body already serialized (`payload` is JSON text, or its UTF-8 bytes). */
export function sendJsonText(res: Res, status: number, payload: string | Buffer, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(payload), ...headers });
  res.end(payload);
}

/** The one error envelope of every HTTP function: `{ error: { code, message, details? } }`. */
export function sendError(res: Res, status: number, code: string, message: string, details?: unknown): void {
  sendJson(res, status, { error: { code, message, ...(details === undefined ? {} : { details }) } });
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

/** The token of an `Authorization: Bearer <token>` header. */
export function bearerToken(req: Req): string | undefined {
  const match = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  return match ? match[1].trim() : undefined;
}

/**
 * Bearer-token check. With no tokens configured the API is open (local demo). 401 without a
 * valid token, 403 when the token lacks the scope the route needs.
 */
export function authorize(req: Req, tokens: Map<string, Set<Scope>>, scope: Scope): HttpError | undefined {
  if (tokens.size === 0) return undefined;
  const token = bearerToken(req);
  const scopes = token === undefined ? undefined : tokens.get(token);
  if (!scopes) return new HttpError(401, 'unauthorized', 'a valid bearer token is required (Authorization: Bearer <token>)');
  if (!scopes.has(scope)) return new HttpError(403, 'forbidden', `this token does not have the "${scope}" scope`);
  return undefined;
}

const logFields = new WeakMap<Res, Record<string, unknown>>();
/** Adds fields (e.g. an upload id) to the access-log line of this response. */
export function annotate(res: Res, fields: Record<string, unknown>): void {
  logFields.set(res, { ...logFields.get(res), ...fields });
}

export interface Route {
  method: string;
  /** Path pattern with `{name}` segments, e.g. `/api/v1/gpus/{uuid}/telemetry`. */
  path: string;
  handle: (req: Req, res: Res, params: Record<string, string>, url: URL) => unknown;
}

function compile(path: string): RegExp {
  const source = path
    .split('/')
    .map((seg) => (/^\{\w+\}$/.test(seg) ? `(?<${seg.slice(1, -1)}>[^/]+)` : seg.replace(/[.*+?^$()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}/?$`);
}

/**
 * A small router: 404 for an unknown path, 405 (with Allow) for a known path and wrong method,
 * JSON errors for HttpError and a generic 500 (no internals leaked) for anything else.
 */
export function router(routes: Route[], opts: { name: string }): HttpHandler {
  const compiled = routes.map((r) => ({ ...r, re: compile(r.path) }));
  const log = loggerFor(opts.name);
  return async (req, res) => {
    const started = process.hrtime.bigint();
    const url = new URL(req.url ?? '/', 'http://localhost');
    let routeLabel = 'unmatched';
    try {
      const matches = compiled.map((r) => ({ r, m: r.re.exec(url.pathname) })).filter((x) => x.m);
      if (matches.length === 0) throw new HttpError(404, 'not_found', `no route for ${url.pathname.slice(0, 200)}`);
      const hit = matches.find((x) => x.r.method === req.method) ?? (req.method === 'HEAD' ? matches.find((x) => x.r.method === 'GET') : undefined);
      if (!hit) {
        const allow = [...new Set(matches.map((x) => x.r.method))].join(', ');
        res.setHeader('allow', allow);
        throw new HttpError(405, 'method_not_allowed', `${req.method} is not allowed on ${url.pathname.slice(0, 200)}; allowed: ${allow}`);
      }
      routeLabel = hit.r.path;
      const params: Record<string, string> = {};
      for (const [k, v] of Object.entries(hit.m!.groups ?? {})) {
        try {
          params[k] = decodeURIComponent(v);
        } catch {
          throw new HttpError(400, 'invalid_parameter', `path parameter ${k} is not valid percent-encoding`);
        }
      }
      await hit.r.handle(req, res, params, url);
    } catch (e) {
      if (e instanceof HttpError) sendError(res, e.status, e.code, e.message, e.details);
      else if (isTransient(e)) {
        // A dependency (NATS, ClickHouse) is down: retryable, and said so.
        res.setHeader('retry-after', '5');
        sendError(res, 503, 'unavailable', 'a backing service is unavailable; retry shortly');
      } else {
        log.error({ err: e, route: routeLabel }, 'request failed');
        sendError(res, 500, 'internal', 'internal error');
      }
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      httpRequestDuration.observe({ function: opts.name, route: routeLabel, method: req.method ?? '', status: String(res.statusCode) }, seconds);
      // One access-log line per request; probes are logged at debug so they do not drown the rest.
      const probe = routeLabel === '/healthz' || routeLabel === '/readyz' || routeLabel === '/metrics';
      log[probe ? 'debug' : 'info'](
        { method: req.method, route: routeLabel, status: res.statusCode, ms: Math.round(seconds * 1e4) / 10, ...logFields.get(res) },
        'request',
      );
    }
  };
}

/** A dependency a process cannot work without, and why it is not usable (the why stays in the log). */
export interface NotReady {
  /** Public name of the dependency, e.g. "NATS". */
  dependency: string;
  /** Internal detail (addresses, error texts): logged, never sent to the caller. */
  detail: string;
}

/** Rejects with `<what>: no answer within <ms> ms` when `work` takes longer. */
export async function within<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Routes every HTTP function (and worker) serves besides its API. */
export function operationalRoutes(ready: () => Promise<NotReady[]>, name = 'http'): Route[] {
  const log = loggerFor(name);
  let lastProblems = '';
  return [
    { method: 'GET', path: '/healthz', handle: (_q, res) => sendJson(res, 200, { status: 'ok' }) },
    {
      method: 'GET',
      path: '/readyz',
      handle: async (_q, res) => {
        const problems = await ready().catch((e: unknown): NotReady[] => [{ dependency: 'readiness check', detail: String(e) }]);
        // Unauthenticated route: it names the dependency; addresses and error texts only go to the log
        // (at warn when the set of problems changes, so a probe every second does not flood it).
        const summary = problems.map((p) => `${p.dependency}: ${p.detail}`).join('; ');
        if (summary !== lastProblems) log[problems.length ? 'warn' : 'info']({ problems: summary || undefined }, problems.length ? 'not ready' : 'ready');
        lastProblems = summary;
        if (problems.length) sendJson(res, 503, { status: 'unavailable', problems: problems.map((p) => `${p.dependency} is unavailable`) });
        else sendJson(res, 200, { status: 'ready' });
      },
    },
    {
      method: 'GET',
      path: '/metrics',
      handle: async (_q, res) => {
        const { contentType, body } = await metricsText();
        res.writeHead(200, { 'content-type': contentType });
        res.end(body);
      },
    },
  ];
}

export interface ListenOptions {
  port: number;
  /** Interface to bind (HTTP_HOST): 127.0.0.1 locally, 0.0.0.0 in containers. */
  host: string;
  /** Whole request, body included (Node's requestTimeout). */
  requestTimeoutMs?: number;
  /** Request headers (Node's headersTimeout). */
  headersTimeoutMs?: number;
  /** A request body from which nothing arrives for this long is cut off with 408. */
  idleTimeoutMs?: number;
}

/** The listen options an HTTP function's configuration gives. */
export const listenOptions = (cfg: HttpConfig): ListenOptions => ({
  port: cfg.PORT,
  host: cfg.HTTP_HOST,
  requestTimeoutMs: cfg.HTTP_REQUEST_TIMEOUT_MS,
  headersTimeoutMs: cfg.HTTP_HEADERS_TIMEOUT_MS,
  idleTimeoutMs: cfg.HTTP_IDLE_TIMEOUT_MS,
});

/** The error a request body ends with when its client sent nothing for the idle timeout. */
export class RequestIdleError extends Error {
  readonly code = 'REQUEST_IDLE';
  constructor(readonly idleMs: number) {
    super(`the client sent nothing for ${idleMs} ms (HTTP_IDLE_TIMEOUT_MS) and was cut off`);
  }
}

const expectsBody = (req: Req) =>
  req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;

/**
 * Cuts off a client that stops sending its request body: 408, then the body stream ends with a
 * RequestIdleError so the handler stops waiting and records why. Time the server itself spends
 * (unread data waiting in the buffer, a body already complete) never counts against the client.
 */
function armIdleTimeout(req: Req, res: Res, ms: number): void {
  if (!ms || !expectsBody(req)) return;
  const socket = req.socket;
  const onTimeout = () => {
    if (req.complete || req.destroyed) return void socket.setTimeout(0);
    // Data we have not read yet: the server is the slow side; look again later.
    if (req.readableLength > 0) return void socket.setTimeout(ms);
    const error = new RequestIdleError(ms);
    if (!res.headersSent) {
      res.setHeader('connection', 'close');
      sendError(res, 408, 'request_timeout', error.message);
    }
    const end = () => req.destroy(error);
    if (res.writableFinished) end();
    else {
      res.once('finish', end);
      setTimeout(end, 1000).unref();
    }
  };
  // Node emits a socket timeout on the response in progress; with a listener it leaves the
  // socket alone, so the decision above is ours.
  res.on('timeout', onTimeout);
  socket.setTimeout(ms);
  req.once('end', () => {
    if (!res.writableFinished) socket.setTimeout(0);
  });
}

/**
 * Serves a handler with node:http. Used instead of the Functions Framework's server in production
 * because the framework buffers every request body (body-parser, 1 GiB limit) while uploads must
 * stream. Timeouts are deliberate (see ListenOptions); a handler that throws or rejects gets a
 * 500 and the process stays up. On SIGTERM it stops accepting, lets in-flight requests finish,
 * then runs `onClose`.
 */
export function serve(
  handler: HttpHandler,
  listen: ListenOptions,
  onClose: () => Promise<void> = async () => {},
  opts: { handleSignals?: boolean; drainMs?: number } = {},
): Promise<Server> {
  const log = loggerFor('http');
  const requestTimeout = listen.requestTimeoutMs ?? 120_000;
  const headersTimeout = Math.min(listen.headersTimeoutMs ?? 30_000, requestTimeout);
  const server = createServer(
    {
      requestTimeout,
      headersTimeout,
      // Node checks the two timeouts above on this interval (30 s by default, coarser than a
      // short setting): a quarter of the shorter one keeps them near their configured value.
      connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.floor(headersTimeout / 4))),
    },
    (req, res) => {
      armIdleTimeout(req, res, listen.idleTimeoutMs ?? 0);
      Promise.resolve()
        .then(() => handler(req, res))
        .catch((e: unknown) => {
          log.error({ err: e, url: req.url?.slice(0, 200) }, 'handler failed outside the router');
          if (!res.headersSent) sendError(res, 500, 'internal', 'internal error');
          else res.destroy();
        });
    },
  );
  server.keepAliveTimeout = 5000;
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    log.info({ signal }, 'draining HTTP server');
    server.close(() => void onClose().finally(() => process.exit(0)));
    server.closeIdleConnections();
    setTimeout(() => process.exit(1), opts.drainMs ?? 25_000).unref();
  };
  if (opts.handleSignals !== false) {
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  }
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
