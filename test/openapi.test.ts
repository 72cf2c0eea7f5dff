import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { PRODUCT_OPENAPI, productOpenApiText, QUERY_OPENAPI } from './local/openapi.ts';
import { repoRoot } from './local/stack.ts';

// The product's one OpenAPI document (docs/openapi.json): current with the zod schemas, covering
// every function's routes, and clean under a standard linter (Redocly CLI, recommended rules).

describe('product OpenAPI document', () => {
  it('matches the committed docs/openapi.json (run `npm run openapi` after changing schemas)', () => {
    expect(readFileSync(PRODUCT_OPENAPI, 'utf8')).toBe(productOpenApiText());
  });

  it('describes the upload, remote-write and query routes', () => {
    const doc = JSON.parse(productOpenApiText());
    const paths = Object.keys(doc.paths);
    for (const p of ['/api/v1/uploads', '/api/v1/uploads/{id}', '/api/v1/write', '/api/v1/gpus', '/api/v1/hosts', '/api/v1/anomalies', '/api/v1/metrics/{metric}/top', '/graphql']) {
      expect(paths).toContain(p);
    }
    expect(doc.paths['/api/v1/uploads'].post.responses['202'].content['application/json'].schema.$ref).toBe('#/components/schemas/UploadAccepted');
    expect(JSON.stringify(doc)).not.toMatch(/\{"nullable":true\}/);
  });

  it('passes `redocly lint` with no errors or warnings', async () => {
    const redocly = join(repoRoot, 'node_modules', '.bin', 'redocly');
    const { stdout, stderr } = await promisify(execFile)(redocly, ['lint', '--format=stylish', PRODUCT_OPENAPI, QUERY_OPENAPI], {
      cwd: repoRoot,
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' },
    });
    const out = stdout + stderr;
    expect(out).toContain('Your API descriptions are valid');
    expect(out).not.toMatch(/^\s*\d+:\d+\s+(error|warning)\s/m); // stylish: `line:col  severity  rule  message`
  }, 60_000);
});
