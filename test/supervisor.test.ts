import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot, startStack, type Stack } from './local/stack.ts';
import { holdRestarts, SupervisedProcess } from './local/supervisor.ts';
import { freePort, waitFor } from './support/ports.ts';

// The local stack supervises like a Deployment: a crashed or killed function process is
// restarted with back-off and a line naming its exit code or signal; an asked-for stop (and
// Ctrl-C on `npm run dev`) is not a crash and restarts nothing.

const dir = mkdtempSync(join(tmpdir(), 'supervisor-'));
const script = join(dir, 'fn.mjs');
// The handler before 'up': a SIGTERM sent on seeing 'up' must find it installed.
writeFileSync(script, `process.on('SIGTERM', () => { console.log('draining'); process.exit(0); }); setInterval(() => {}, 1000); console.log('up ' + process.pid);`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function supervised(extra: { resetAfterMs?: number } = {}) {
  const lines: string[] = [];
  const sup = new SupervisedProcess({ args: [script], cwd: dir, env: process.env, output: (l) => lines.push(l), restartDelayMs: 100, ...extra });
  const ups = () => lines.filter((l) => l.startsWith('up ')).length;
  return { sup, lines, ups };
}

describe('SupervisedProcess', () => {
  it('restarts after kill -9, a crash or even exit 0, with a doubling delay, and names what happened', async () => {
    const { sup, lines, ups } = supervised();
    await waitFor(async () => ups() === 1, 'first start', 10_000);
    const first = sup.proc.pid!;
    sup.proc.kill('SIGKILL');
    await waitFor(async () => ups() === 2, 'restart after SIGKILL', 10_000);
    expect(sup.proc.pid).not.toBe(first);
    sup.proc.kill('SIGKILL');
    await waitFor(async () => ups() === 3, 'second restart', 10_000);
    process.kill(sup.proc.pid!, 'SIGTERM'); // exits 0 on its own: still not asked for by the supervisor
    await waitFor(async () => ups() === 4, 'restart after exit 0', 10_000);
    expect(lines.filter((l) => l.startsWith('exited unexpectedly'))).toEqual([
      'exited unexpectedly (signal SIGKILL); restarting in 0.1s (restart 1)',
      'exited unexpectedly (signal SIGKILL); restarting in 0.2s (restart 2)',
      'exited unexpectedly (code 0); restarting in 0.4s (restart 3)',
    ]);
    expect(sup.restarts).toBe(3);
    await sup.stop();
  });

  it('starts the back-off over once a process has run for a while', async () => {
    const { sup, lines, ups } = supervised({ resetAfterMs: 500 });
    await waitFor(async () => ups() === 1, 'start', 10_000);
    sup.proc.kill('SIGKILL');
    await waitFor(async () => ups() === 2, 'restart', 10_000);
    await sleep(700);
    sup.proc.kill('SIGKILL');
    await waitFor(async () => ups() === 3, 'restart', 10_000);
    expect(lines.filter((l) => l.startsWith('exited')).map((l) => l.match(/in ([\d.]+)s/)![1])).toEqual(['0.1', '0.1']);
    await sup.stop();
  });

  it('stop() drains, is not followed by a restart, and SIGKILLs after the grace period', async () => {
    const { sup, lines, ups } = supervised();
    await waitFor(async () => ups() === 1, 'start', 10_000);
    const pid = sup.proc.pid!;
    await sup.stop();
    expect(lines).toContain('draining');
    await sleep(400);
    expect(ups()).toBe(1);
    expect(lines.some((l) => l.startsWith('exited unexpectedly'))).toBe(false);
    expect(alive(pid)).toBe(false);

    const stubborn = join(dir, 'stubborn.mjs');
    writeFileSync(stubborn, `process.on('SIGTERM', () => {}); setInterval(() => {}, 1000); console.log('up');`);
    const out: string[] = [];
    const s = new SupervisedProcess({ args: [stubborn], cwd: dir, env: process.env, output: (l) => out.push(l) });
    await waitFor(async () => out.includes('up'), 'start', 10_000);
    await s.stop(300);
    expect(out).toContain('did not exit within 300 ms; SIGKILL');
    expect(s.running).toBe(false);
  });
});

describe('a supervised local stack', () => {
  let stack: Stack | undefined;
  afterAll(async () => stack?.stop(), 60_000);

  it('brings back a killed HTTP function and a killed worker; stopping the stack restarts nothing', async () => {
    stack = await startStack({ supervise: true, httpFunctions: ['upload'], ingestWorkers: 1, collectWorkers: 0 });
    const [upload, ingest] = ['upload#1', 'ingest#1'].map((n) => stack!.processes.find((p) => p.name === n)!);
    await waitFor(async () => ingest.output.some((l) => l.includes('"msg":"worker started"')), 'ingest started', 60_000, 100);
    for (const fp of [upload, ingest]) {
      const pid = fp.process.pid;
      fp.process.kill('SIGKILL');
      await waitFor(async () => fp.process.pid !== pid && fp.process.exitCode === null, `${fp.name} restarted`, 30_000, 100);
      expect(fp.output).toContain('exited unexpectedly (signal SIGKILL); restarting in 1s (restart 1)');
    }
    // Same URL as before the kill.
    await waitFor(async () => (await fetch(`${stack!.uploadUrl}/healthz`)).ok, 'upload serving again', 60_000, 200);
    await waitFor(async () => ingest.output.filter((l) => l.includes('"msg":"worker started"')).length === 2, 'ingest started again', 60_000, 100);

    const pids = [upload, ingest].map((p) => p.process.pid!);
    await stack.stop();
    stack = undefined;
    await sleep(1500);
    expect(pids.map(alive)).toEqual([false, false]);
    expect([upload, ingest].map((p) => p.restarts)).toEqual([1, 1]);
  }, 180_000);
});

describe('npm run dev / npm run scale', () => {
  it.each([
    // dev: fixed workers, one of each; scale: workers follow the autoscaler (none while idle).
    ['up', ['upload#1', 'ingest#1'], ['upload#1', 'query#1', 'ingest#1', 'collect#1']],
    ['autoscale', ['query#1'], ['upload#1', 'query#1']],
  ])('cli %s: a function killed with -9 comes back; Ctrl-C stops everything and restarts nothing', async (command, victims, functions) => {
    const data = mkdtempSync(join(tmpdir(), 'cli-up-'));
    const [uploadPort, queryPort] = [await freePort(), await freePort()];
    // Its own process group, so the test can signal the whole group as a terminal's Ctrl-C does.
    const cli: ChildProcess = spawn(
      process.execPath,
      ['--import', 'tsx', join(repoRoot, 'test/local/cli.ts'), command, '--data', data, '--upload-port', String(uploadPort), '--query-port', String(queryPort)],
      { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    let out = '';
    cli.stdout!.on('data', (d) => (out += d));
    cli.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => cli.once('exit', (code) => r(code)));
    const pidOf = (label: string) => Number([...out.matchAll(new RegExp(`\\[${label}\\] .*"pid":(\\d+)`, 'g'))].at(-1)?.[1]);
    try {
      await waitFor(async () => out.includes('local stack is up') && functions.every((f) => pidOf(f) > 0), `cli ${command}\n${out}`, 120_000, 200);
      for (const victim of victims) {
        const pid = pidOf(victim);
        process.kill(pid, 'SIGKILL');
        await waitFor(async () => out.includes(`[${victim}] exited unexpectedly (signal SIGKILL); restarting in 1s (restart 1)`), `${victim} restart line`, 30_000, 100);
        await waitFor(async () => pidOf(victim) !== pid, `${victim} back`, 60_000, 200);
      }
      await waitFor(async () => (await fetch(`http://127.0.0.1:${uploadPort}/healthz`)).ok && (await fetch(`http://127.0.0.1:${queryPort}/healthz`)).ok, 'serving', 60_000, 200);

      const pids = functions.map(pidOf);
      const before = out.length;
      process.kill(-cli.pid!, 'SIGINT');
      expect(await exited).toBe(0);
      const after = out.slice(before);
      expect(after).toContain('stopping');
      expect(after).not.toMatch(/exited unexpectedly|restarting/);
      await sleep(500);
      expect(pids.map(alive)).toEqual(pids.map(() => false));
    } finally {
      if (cli.exitCode === null) process.kill(-cli.pid!, 'SIGKILL');
      rmSync(data, { recursive: true, force: true });
    }
  }, 240_000);
});

describe('holdRestarts', () => {
  it('stops restarting every supervised process of this CLI (called in its signal handler)', async () => {
    const { sup, lines, ups } = supervised();
    await waitFor(async () => ups() === 1, 'start', 10_000);
    holdRestarts();
    sup.proc.kill('SIGKILL');
    await sup.exited;
    await sleep(400);
    expect(ups()).toBe(1);
    expect(lines.some((l) => l.startsWith('exited unexpectedly'))).toBe(false);
  });
});
