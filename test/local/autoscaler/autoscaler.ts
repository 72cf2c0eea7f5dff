import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { decide, initialState, triggerLabel, type Decision, type Observation, type ScalerState } from './decide.ts';
import { readConsumerLag, type ConsumerLag } from './jsz.ts';
import { ProcessPool, repoRoot, type WorkerPool } from './process-pool.ts';
import { loadScaledObjects, parseScaledObject, type NatsJetStreamTrigger, type ScaledObjectConfig, type ScaledObjectOverrides } from './scaledobject.ts';
import { formatDecision, writeStatusFile, type ScaledObjectStatus, type StatusSnapshot } from './status.ts';

// The local autoscaler: follows the same ScaledObjects as KEDA. Every pollingInterval per
// ScaledObject it reads the consumer lag of each trigger from /jsz, decides (decide.ts) and
// applies the count to a WorkerPool (local worker processes by default).

export type { WorkerPool } from './process-pool.ts';
export { formatStatus, readStatusFile } from './status.ts';

export interface AutoscaleDecision extends Decision {
  scaledObject: string;
  target: string;
  at: string;
}

export interface AutoscalerOptions {
  /** Directory with the ScaledObjects (default `<repo>/keda`); ignored when scaledObjects is given. */
  kedaDir?: string;
  /** ScaledObject documents (parsed YAML objects) or already parsed configs. */
  scaledObjects?: (unknown | ScaledObjectConfig)[];
  /** `host:port` of the local nats-server's monitoring port (replaces natsServerMonitoringEndpoint). */
  monitorEndpoint?: string;
  /** Timings etc. for tests/demos, applied over every ScaledObject. */
  overrides?: ScaledObjectOverrides;
  /** Only these scale targets (function names). */
  targets?: string[];
  /** Environment for worker processes started by the default ProcessPool. */
  env?: Record<string, string>;
  /** Pools to drive, keyed by scale target; default: a ProcessPool per target. */
  pools?: Record<string, WorkerPool> | ((target: string) => WorkerPool);
  /** Output of worker processes (default console.log). */
  workerOutput?: (line: string) => void;
  /** Where to write the status snapshot as JSON after each poll. */
  statusFile?: string;
  /** Called with every decision. */
  onDecision?: (d: AutoscaleDecision) => void;
  /** Which decisions are printed: changes of count or kind (default), all, or none. */
  print?: 'changes' | 'all' | 'none';
  log?: (line: string) => void;
  /** Injected for tests: one trigger's lag. */
  readLag?: (trigger: NatsJetStreamTrigger, cfg: ScaledObjectConfig) => Promise<ConsumerLag>;
  now?: () => number;
}

export interface Autoscaler {
  configs: ScaledObjectConfig[];
  pools: Record<string, WorkerPool>;
  status(): StatusSnapshot;
  /** Run one poll of every ScaledObject now (tests; may overlap a timer poll). */
  pollOnce(): Promise<AutoscaleDecision[]>;
  /** Stop polling; pools the autoscaler created are scaled to 0 (workers drain) unless keepWorkers. */
  stop(opts?: { keepWorkers?: boolean }): Promise<void>;
}

function isConfig(x: unknown): x is ScaledObjectConfig {
  return typeof x === 'object' && x !== null && 'triggers' in x && 'target' in x && !('spec' in x);
}

export function resolveConfigs(opts: Pick<AutoscalerOptions, 'kedaDir' | 'scaledObjects' | 'monitorEndpoint' | 'overrides' | 'targets'>): ScaledObjectConfig[] {
  const overrides: ScaledObjectOverrides = { ...opts.overrides, ...(opts.monitorEndpoint ? { monitorEndpoint: opts.monitorEndpoint } : {}) };
  let configs: ScaledObjectConfig[];
  if (opts.scaledObjects) {
    configs = opts.scaledObjects.map((d) => (isConfig(d) ? d : parseScaledObject(d, overrides)));
  } else {
    const dir = opts.kedaDir ?? join(repoRoot, 'keda');
    if (!existsSync(dir)) throw new Error(`no ScaledObjects: ${dir} does not exist`);
    configs = loadScaledObjects(dir, overrides);
  }
  if (opts.targets) configs = configs.filter((c) => opts.targets!.includes(c.target));
  if (configs.length === 0) throw new Error('no ScaledObjects to follow');
  return configs;
}

export function startAutoscaler(opts: AutoscalerOptions = {}): Autoscaler {
  const configs = resolveConfigs(opts);
  const now = opts.now ?? Date.now;
  const log = opts.log ?? console.log;
  const print = opts.print ?? 'changes';
  const readLag = opts.readLag ?? ((t: NatsJetStreamTrigger) => readConsumerLag(t));
  const startedAt = new Date(now()).toISOString();

  const pools: Record<string, WorkerPool> = {};
  const ownedPools = new Set<string>();
  for (const c of configs) {
    if (pools[c.target]) continue;
    if (typeof opts.pools === 'function') pools[c.target] = opts.pools(c.target);
    else if (opts.pools?.[c.target]) pools[c.target] = opts.pools[c.target]!;
    else {
      pools[c.target] = new ProcessPool({ fn: c.target, env: opts.env, output: opts.workerOutput });
      ownedPools.add(c.target);
    }
  }

  const states = new Map<string, ScalerState>(configs.map((c) => [c.name, initialState(now())]));
  const statuses = new Map<string, ScaledObjectStatus>(
    configs.map((c) => [
      c.name,
      {
        scaledObject: c.name,
        target: c.target,
        triggers: c.triggers.map((t) => ({
          name: t.name,
          stream: t.stream,
          consumer: t.consumer,
          lagThreshold: t.lagThreshold,
          activationLagThreshold: t.activationLagThreshold,
          lag: null,
          failures: 0,
        })),
        minReplicaCount: c.minReplicaCount,
        maxReplicaCount: c.maxReplicaCount,
        pollingInterval: c.pollingInterval,
        cooldownPeriod: c.cooldownPeriod,
        replicas: pools[c.target]!.replicas(),
        lag: null,
        active: false,
        failures: 0,
      },
    ]),
  );
  const lastPrinted = new Map<string, string>();

  let stoppedAt: string | undefined;
  function snapshot(): StatusSnapshot {
    const scaledObjects = configs.map((c) => ({ ...statuses.get(c.name)!, replicas: pools[c.target]!.replicas() }));
    return { pid: process.pid, startedAt, updatedAt: new Date(now()).toISOString(), stoppedAt, scaledObjects };
  }

  let writing: Promise<void> = Promise.resolve();
  function persist(): Promise<void> {
    if (!opts.statusFile) return Promise.resolve();
    const file = opts.statusFile;
    const snap = snapshot();
    writing = writing.then(() => writeStatusFile(file, snap)).catch((e) => log(`[autoscale] cannot write ${file}: ${(e as Error).message}`));
    return writing;
  }

  async function poll(c: ScaledObjectConfig): Promise<AutoscaleDecision> {
    const pool = pools[c.target]!;
    // Each trigger is read on its own (KEDA: one scaler per trigger); a failure is that trigger's.
    const readings = await Promise.allSettled(c.triggers.map((t) => readLag(t, c)));
    const obs: Observation[] = readings.map((r) => (r.status === 'fulfilled' ? { lag: r.value.lag } : { error: (r.reason as Error).message }));
    const t = now();
    const { decision, state } = decide(c, states.get(c.name)!, pool.replicas(), obs, t);
    states.set(c.name, state);
    const d: AutoscaleDecision = { ...decision, scaledObject: c.name, target: c.target, at: new Date(t).toISOString() };

    const key = `${d.kind}:${d.to}`;
    if (print === 'all' || (print === 'changes' && (d.to !== d.from || lastPrinted.get(c.name) !== key))) log(formatDecision(c.target, d));
    lastPrinted.set(c.name, key);

    const st = statuses.get(c.name)!;
    st.triggers.forEach((ts, i) => {
      const r = readings[i]!;
      const value = r.status === 'fulfilled' ? r.value : undefined;
      Object.assign(ts, {
        lag: value?.lag ?? null,
        numPending: value?.numPending,
        numAckPending: value?.numAckPending,
        error: r.status === 'rejected' ? (r.reason as Error).message : undefined,
        failures: state.failures[i],
      });
    });
    Object.assign(st, {
      lag: d.lag,
      active: d.active,
      error: d.error,
      failures: Math.max(...state.failures),
      lastActiveTime: state.lastActiveTime === undefined ? undefined : new Date(state.lastActiveTime).toISOString(),
      lastDecision: d,
      updatedAt: d.at,
    });
    if (d.to !== d.from) {
      st.lastScale = d;
      try {
        await pool.scaleTo(d.to);
      } catch (e) {
        log(`[autoscale] ${c.target} scaling to ${d.to} failed: ${(e as Error).message}`);
      }
    }
    st.replicas = pool.replicas();
    opts.onDecision?.(d);
    await persist();
    return d;
  }

  // One timer chain per ScaledObject; a poll never overlaps the previous one of the same object.
  let stopped = false;
  const timers = new Map<string, NodeJS.Timeout>();
  const inflight = new Map<string, Promise<unknown>>();
  function schedule(c: ScaledObjectConfig, delayMs: number): void {
    timers.set(
      c.name,
      setTimeout(() => {
        if (stopped) return;
        const started = now();
        const p = poll(c)
          .catch((e) => log(`[autoscale] ${c.target} poll failed: ${(e as Error).stack ?? e}`))
          .finally(() => {
            inflight.delete(c.name);
            if (!stopped) schedule(c, Math.max(0, c.pollingInterval * 1000 - (now() - started)));
          });
        inflight.set(c.name, p);
      }, delayMs),
    );
  }
  for (const c of configs) {
    const triggers = c.triggers.map(
      (t) => `${triggerLabel(t)} at ${t.monitoringEndpoint} (lagThreshold ${t.lagThreshold}, activation ${t.activationLagThreshold})`,
    );
    log(
      `[autoscale] following ScaledObject ${c.name} → ${c.target}: ${triggers.join(', ')}, replicas ${c.minReplicaCount}..${c.maxReplicaCount}, ` +
        `poll ${c.pollingInterval}s, cooldown ${c.cooldownPeriod}s`,
    );
    schedule(c, 0);
  }
  void persist();

  return {
    configs,
    pools,
    status: snapshot,
    pollOnce: () => Promise.all(configs.map((c) => poll(c))),
    async stop(stopOpts = {}) {
      stopped = true;
      for (const t of timers.values()) clearTimeout(t);
      await Promise.all(inflight.values());
      if (!stopOpts.keepWorkers) await Promise.all([...ownedPools].map((t) => pools[t]!.scaleTo(0)));
      stoppedAt = new Date(now()).toISOString();
      await persist();
    },
  };
}
