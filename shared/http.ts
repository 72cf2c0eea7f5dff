import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Scope } from './config.ts';
import { httpRequestDuration, metricsText } from './metrics.ts';
import { isTransient } from './transient.ts';

// Plain node:http request/response types, so a handler runs unchanged under the Functions
// Framework (whose Express objects extend these) and under our streaming server below.
export type Req = IncomingMessage;
export type Res = ServerResponse;
export type HttpHandler = (req: Req, res: Res) => unknown;

export function sendJson(res: Res, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  const payload = JSON.stringify(body);
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

/**
 * Bearer-token check. With no tokens configured the API is open (local demo). 401 without a
 * valid token, 403 when the token lacks the scope the route needs.
 */
export function authorize(req: Req, tokens: Map<string, Set<Scope>>, scope: Scope): HttpError | undefined {
  if (tokens.size === 0) return undefined;
  const header = req.headers.authorization ?? '';
  const match = /^Bearer\s+(.+)$/i.exec(header);
  const scopes = match ? tokens.get(match[1].trim()) : undefined;
  if (!scopes) return new HttpError(401, 'unauthorized', 'a valid bearer token is required (Authorization: Bearer <token>)');
  if (!scopes.has(scope)) return new HttpError(403, 'forbidden', `this token does not have the "${scope}" scope`);
  return undefined;
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
  return async (req, res) => {
    const started = process.hrtime.bigint();
    const url = new URL(req.url ?? '/', 'http://localhost');
    let routeLabel = 'unmatched';
    try {
      const matches = compiled.map((r) => ({ r, m: r.re.exec(url.pathname) })).filter((x) => x.m);
      if (matches.length === 0) throw new HttpError(404, 'not_found', `no route for ${url.pathname}`);
      const hit = matches.find((x) => x.r.method === req.method) ?? (req.method === 'HEAD' ? matches.find((x) => x.r.method === 'GET') : undefined);
      if (!hit) {
        const allow = [...new Set(matches.map((x) => x.r.method))].join(', ');
        res.setHeader('allow', allow);
        throw new HttpError(405, 'method_not_allowed', `${req.method} is not allowed on ${url.pathname}; allowed: ${allow}`);
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
        console.error(JSON.stringify({ level: 'error', fn: opts.name, msg: 'request failed', error: String(e) }));
        sendError(res, 500, 'internal', 'internal error');
      }
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      httpRequestDuration.observe({ function: opts.name, route: routeLabel, method: req.method ?? '', status: String(res.statusCode) }, seconds);
    }
  };
}

/** Routes every HTTP function (and worker) serves besides its API. */
export function operationalRoutes(ready: () => Promise<string[]>): Route[] {
  return [
    { method: 'GET', path: '/healthz', handle: (_q, res) => sendJson(res, 200, { status: 'ok' }) },
    {
      method: 'GET',
      path: '/readyz',
      handle: async (_q, res) => {
        const problems = await ready().catch((e) => [String(e)]);
        if (problems.length) sendJson(res, 503, { status: 'unavailable', problems });
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

/**
 * Serves a handler with node:http. Used instead of the Functions Framework's server in production
 * because the framework buffers every request body (body-parser, 1 GiB limit) while uploads must
 * stream. On SIGTERM it stops accepting, lets in-flight requests finish, then runs `onClose`.
 */
export function serve(
  handler: HttpHandler,
  port: number,
  onClose: () => Promise<void> = async () => {},
  opts: { handleSignals?: boolean; drainMs?: number } = {},
): Promise<Server> {
  const server = createServer((req, res) => void handler(req, res));
  server.keepAliveTimeout = 5000;
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    console.log(JSON.stringify({ level: 'info', msg: `${signal}: draining HTTP server` }));
    server.close(() => void onClose().finally(() => process.exit(0)));
    server.closeIdleConnections();
    setTimeout(() => process.exit(1), opts.drainMs ?? 25_000).unref();
  };
  if (opts.handleSignals !== false) {
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  }
  return new Promise((resolve) => server.listen(port, () => resolve(server)));
}
