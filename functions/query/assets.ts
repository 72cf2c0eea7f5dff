import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, extname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HttpError, type Req, type Res } from '../../shared/http.ts';

// The console's static files (built by functions/query/console/build.ts into dist/console/),
// loaded once into memory: a fixed set of names, so no path from a request ever reaches the
// file system. Served with a strict Content-Security-Policy: scripts and styles only from this
// origin, no inline script; network only to this origin and the upload function's.

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.map': 'application/json; charset=utf-8',
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

/** Where the built console is: beside the bundle (dist/query.js → dist/console) or in dist/ of the repo. */
export function defaultConsoleDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const beside = join(here, 'console');
  return existsSync(join(beside, 'assets', 'app.js')) ? beside : resolve(here, '..', '..', 'dist', 'console');
}

function walk(dir: string, root = dir): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p, root) : [relative(root, p)];
  });
}

export function contentSecurityPolicy(connectOrigins: string[]): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    // uPlot and Swagger UI set element styles from script (CSSOM), which style-src 'self' allows.
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    `connect-src 'self' ${connectOrigins.join(' ')}`.trim(),
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

export class ConsoleAssets {
  private readonly files = new Map<string, Asset>();

  constructor(readonly dir: string) {
    if (!existsSync(dir)) return; // not built: `/` explains how to build it
    for (const rel of walk(dir)) {
      const type = TYPES[extname(rel)];
      if (!type) continue;
      const body = readFileSync(join(dir, rel));
      this.files.set(rel.split('\\').join('/'), { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
    }
  }

  get built(): boolean {
    return this.files.has('index.html');
  }

  send(req: Req, res: Res, name: string, csp: string, cache: 'revalidate' | 'immutable' = 'revalidate'): void {
    const a = this.files.get(name);
    if (!a) {
      if (name === 'index.html') throw new HttpError(404, 'console_not_built', `the console is not built: run \`npm run build\` (looked in ${this.dir})`);
      throw new HttpError(404, 'not_found', `no console file ${name.slice(0, 200)}`);
    }
    const headers: Record<string, string> = {
      'content-type': a.type,
      etag: a.etag,
      'cache-control': cache === 'immutable' ? 'public, max-age=3600' : 'no-cache',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'content-security-policy': csp,
    };
    if (req.headers['if-none-match'] === a.etag) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, { ...headers, 'content-length': String(a.body.length) });
    res.end(req.method === 'HEAD' ? undefined : a.body);
  }
}
