import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uploadFile } from '../functions/upload/cli.ts';
import { repoRoot, startStack, type Stack } from './local/stack.ts';

// The upload CLI (functions/upload/cli.ts) against the real upload function, ingest and collect:
// it streams the file through node:http (not fetch, whose web-stream body cost ≈ 3× the CPU), so
// both the normal answer and one given before the body is sent whole must come through.

const FIXTURE = join(repoRoot, 'test/fixtures/dcgm_metrics_20250718_134233.csv');
const LIMIT = 2 * 1024 * 1024;
let stack: Stack;
let dir: string;

/** A non-TTY progress sink: one line per write. */
function lines(): { out: NodeJS.WriteStream; seen: string[] } {
  const seen: string[] = [];
  return { seen, out: { isTTY: false, write: (l: string) => (seen.push(l.trim()), true) } as unknown as NodeJS.WriteStream };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gputel-cli-'));
  stack = await startStack({ dataDir: join(dir, 'stack'), httpFunctions: ['upload'], env: { UPLOAD_MAX_BYTES: String(LIMIT) } });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('upload CLI', () => {
  it('streams a file with progress and waits until every row is stored', async () => {
    const { out, seen } = lines();
    const status = await uploadFile(FIXTURE, { url: stack.uploadUrl + '/', wait: true, pollMs: 200, out });
    expect(status).toMatchObject({ state: 'done', rows_accepted: 2470, rows_stored: 2470, rows_rejected: 0 });
    expect(seen).toContain('uploading dcgm_metrics_20250718_134233.csv: 1.1/1.1 MiB (100%)');
    expect(seen.some((l) => /^uploaded 1\.1 MiB in [\d.]+ s — upload id [\w-]+$/.test(l))).toBe(true);
    expect(seen.at(-1)).toMatch(/^done: 2,470 rows stored, 0 rejected/);
  }, 60_000);

  it("reports the server's answer given before the body was sent whole (413 over the limit)", async () => {
    const big = join(dir, 'big.csv');
    writeFileSync(big, Buffer.alloc(8 * LIMIT, 'a'));
    const { out } = lines();
    await expect(uploadFile(big, { url: stack.uploadUrl, out })).rejects.toThrow(`upload rejected (413): the upload (${8 * LIMIT} bytes) is larger than the limit of ${LIMIT} bytes`);
  }, 30_000);

  it('fails with the connection error when nothing listens', async () => {
    await expect(uploadFile(FIXTURE, { url: 'http://127.0.0.1:9', out: lines().out })).rejects.toThrow(/ECONNREFUSED/);
  });
});
