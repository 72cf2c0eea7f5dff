import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SupervisedProcess } from '../supervisor.ts';

// A local stand-in for a Deployment's replicas: N worker processes of one function. scaleTo(n)
// starts or stops processes; a stop is SIGTERM (the worker drains), then SIGKILL after a grace
// period, like a pod's terminationGracePeriodSeconds. A worker that dies on its own is restarted
// with a growing delay (like CrashLoopBackOff, ../supervisor.ts). Fixed-count mode is this pool
// with scaleTo(N).

export interface WorkerPool {
  /** Desired replica count (a Deployment's spec.replicas). */
  replicas(): number;
  scaleTo(n: number): Promise<void>;
}

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export interface ProcessPoolOptions {
  /** Function name: `functions/<fn>/worker.ts` is started. */
  fn: string;
  /** Environment for the workers (NATS_URL, CLICKHOUSE_URL, ...), on top of process.env. */
  env?: Record<string, string>;
  cwd?: string;
  /** Arguments after `node`; default `--import tsx functions/<fn>/worker.ts`. */
  args?: string[];
  /** SIGTERM → SIGKILL grace period (default 30 s). */
  stopTimeoutMs?: number;
  /** Receives every output line, prefixed `[fn#n]` (default: console.log). */
  output?: (line: string) => void;
  /** First restart delay after a crash (default 1 s; doubles, max 30 s). */
  restartDelayMs?: number;
}

interface Instance {
  slot: number;
  label: string;
  sup: SupervisedProcess;
  terminating: boolean;
}

export class ProcessPool implements WorkerPool {
  private readonly instances: Instance[] = [];
  private desired = 0;
  /** Serialises scaleTo calls. */
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly opts: ProcessPoolOptions) {}

  replicas(): number {
    return this.desired;
  }

  /** Live processes (not terminating). */
  running(): { label: string; pid?: number; restarts: number }[] {
    return this.instances.filter((i) => !i.terminating).map((i) => ({ label: i.label, pid: i.sup.proc.pid, restarts: i.sup.restarts }));
  }

  scaleTo(n: number): Promise<void> {
    if (!Number.isInteger(n) || n < 0) return Promise.reject(new Error(`invalid replica count ${n}`));
    const next = this.queue.then(() => this.apply(n));
    this.queue = next.catch(() => undefined);
    return next;
  }

  stop(): Promise<void> {
    return this.scaleTo(0);
  }

  private async apply(n: number): Promise<void> {
    this.desired = n;
    const live = this.instances.filter((i) => !i.terminating);
    for (let k = live.length; k < n; k++) this.start(this.freeSlot());
    if (live.length > n) {
      // Newest (highest slot) first, as a ReplicaSet prefers to delete the youngest pods.
      const victims = live.sort((a, b) => b.slot - a.slot).slice(0, live.length - n);
      await Promise.all(victims.map((v) => this.terminate(v)));
    }
  }

  private freeSlot(): number {
    const used = new Set(this.instances.map((i) => i.slot));
    let s = 1;
    while (used.has(s)) s++;
    return s;
  }

  private start(slot: number): void {
    const label = `${this.opts.fn}#${slot}`;
    const out = this.opts.output ?? console.log;
    const sup = new SupervisedProcess({
      args: this.opts.args ?? ['--import', 'tsx', `functions/${this.opts.fn}/worker.ts`],
      cwd: this.opts.cwd ?? repoRoot,
      // WORKER_HTTP_PORT=0: N local workers cannot share one health port.
      env: { ...process.env, ...this.opts.env, WORKER_HTTP_PORT: '0' },
      output: (line) => out(`[${label}] ${line}`),
      restartDelayMs: this.opts.restartDelayMs,
    });
    this.instances.push({ slot, label, sup, terminating: false });
  }

  private async terminate(i: Instance): Promise<void> {
    i.terminating = true;
    await i.sup.stop(this.opts.stopTimeoutMs ?? 30_000);
    this.instances.splice(this.instances.indexOf(i), 1);
  }
}

/** Fixed-count mode (the original system's manual scaling): one pool per function, no autoscaler. */
export async function startFixedPools(
  counts: Record<string, number>,
  opts: Omit<ProcessPoolOptions, 'fn'> = {},
): Promise<{ pools: Record<string, ProcessPool>; stop(): Promise<void> }> {
  const pools: Record<string, ProcessPool> = {};
  for (const [fn, n] of Object.entries(counts)) {
    pools[fn] = new ProcessPool({ ...opts, fn });
    await pools[fn].scaleTo(n);
  }
  return { pools, stop: async () => void (await Promise.all(Object.values(pools).map((p) => p.stop()))) };
}
