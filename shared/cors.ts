import type { HttpHandler } from './http.ts';

// CORS for an HTTP function called by a page of another origin (the console on query's origin
// uploads to the upload function). Only listed origins get the headers; preflights of listed
// origins are answered here, everything else passes through unchanged (a browser then refuses).

export interface CorsPolicy {
  origins: string[];
  methods: string[];
  headers: string[];
  exposeHeaders?: string[];
  maxAgeSeconds?: number;
}

export function withCors(handler: HttpHandler, policy: CorsPolicy): HttpHandler {
  if (policy.origins.length === 0) return handler;
  const allowed = new Set(policy.origins);
  return (req, res) => {
    const origin = req.headers.origin;
    if (origin && allowed.has(origin)) {
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('vary', 'Origin');
      if (policy.exposeHeaders?.length) res.setHeader('access-control-expose-headers', policy.exposeHeaders.join(', '));
      if (req.method === 'OPTIONS' && req.headers['access-control-request-method']) {
        res.writeHead(204, {
          'access-control-allow-methods': policy.methods.join(', '),
          'access-control-allow-headers': policy.headers.join(', '),
          'access-control-max-age': String(policy.maxAgeSeconds ?? 600),
        });
        res.end();
        return;
      }
    }
    return handler(req, res);
  };
}
