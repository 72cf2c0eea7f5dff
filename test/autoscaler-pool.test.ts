import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ProcessPool } from './local/autoscaler/process-pool.ts';
import { waitFor } from './support/ports.ts';

// ProcessPool with a stand-in worker script (the real workers need NATS + ClickHouse): start,
// prefix output, drain on SIGTERM, SIGKILL after the grace period, restart after a crash.

const dir = mkdtempSync(join(tmpdir(), 'pool-'));
const script = join(dir, 'worker.mjs');
writeFileSync(
  script,
  `const keep = setInterval(() => {}, 1000);
   process.on('SIGTERM', () => {
     if (process.env.IGNORE_TERM) return;
     console.log('draining');
     setTimeout(() => { console.log('drained'); clearInterval(keep); }, 150);
   });
   // After the handler: a SIGTERM sent on seeing this line must find it installed.
   console.log('started port=' + process.env.WORKER_HTTP_PORT + ' foo=' + process.env.FOO);
   if (process.env.CRASH_FILE) {
     const fs = await import('node:fs');
     if (!fs.existsSync(process.env.CRASH_FILE)) { fs.writeFileSync(process.env.CRASH_FILE, 'x'); console.error('boom'); process.exit(3); }
   }`,
);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pool(env: Record<string, string> = {}, extra: Partial<ConstructorParameters<typeof ProcessPool>[0]> = {}) {
  const lines: string[] = [];
  const p = new ProcessPool({ fn: 'ingest', args: [script], cwd: dir, env: { FOO: 'bar', WORKER_HTTP_PORT: '8080', ...env }, output: (l) => lines.push(l), ...extra });
  return { p, lines };
}

describe('ProcessPool', () => {
  it('starts N labelled processes with WORKER_HTTP_PORT=0 and drains them on scale-down', async () => {
    const { p, lines } = pool();
    await p.scaleTo(3);
    expect(p.replicas()).toBe(3);
    await waitFor(async () => lines.filter((l) => l.includes('started')).length === 3, 'three workers', 10_000);
    expect(lines.filter((l) => l.includes('started')).sort()).toEqual([
      '[ingest#1] started port=0 foo=bar',
      '[ingest#2] started port=0 foo=bar',
      '[ingest#3] started port=0 foo=bar',
    ]);
    await p.scaleTo(1); // resolves after the two newest drained and exited
    expect(lines).toEqual(expect.arrayContaining(['[ingest#3] draining', '[ingest#3] drained', '[ingest#2] drained']));
    expect(lines).not.toContain('[ingest#1] draining');
    expect(p.running().map((r) => r.label)).toEqual(['ingest#1']);
    await p.scaleTo(2); // the freed slot is reused
    expect(p.running().map((r) => r.label).sort()).toEqual(['ingest#1', 'ingest#2']);
    await p.stop();
    expect(p.running()).toEqual([]);
    expect(p.replicas()).toBe(0);
  });

  it('kills a worker that ignores SIGTERM after the grace period', async () => {
    const { p, lines } = pool({ IGNORE_TERM: '1' }, { stopTimeoutMs: 300 });
    await p.scaleTo(1);
    await waitFor(async () => lines.some((l) => l.includes('started')), 'worker', 10_000);
    const t0 = Date.now();
    await p.scaleTo(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(lines).toContain('[ingest#1] did not exit within 300 ms; SIGKILL');
  });

  it('restarts a worker that crashes', async () => {
    const { p, lines } = pool({ CRASH_FILE: join(dir, 'crashed') }, { restartDelayMs: 50 });
    await p.scaleTo(1);
    await waitFor(async () => lines.filter((l) => l.includes('started')).length === 2, 'restart', 10_000);
    expect(lines).toContain('[ingest#1] boom');
    expect(lines.some((l) => /^\[ingest#1\] exited unexpectedly \(code 3\); restarting in/.test(l))).toBe(true);
    expect(p.running()).toMatchObject([{ label: 'ingest#1', restarts: 1 }]);
    await p.stop();
  });
});
