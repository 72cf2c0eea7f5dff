import type { Behavior, NatsJetStreamTrigger, ScaledObjectConfig, ScalingRules } from './scaledobject.ts';

// Pure replica arithmetic: what KEDA's executor (0↔1, scale to zero, fallback) and the HPA
// controller (1↔N) would do with one lag reading per trigger. No I/O, no clock: the caller passes
// `now` and keeps the returned state for the next call.
//
// Sources: keda pkg/scaling/scale_handler.go (getScaledObjectState: active if any trigger is),
// pkg/scaling/executor/scale_scaledobjects.go (RequestScale), pkg/fallback (per metric);
// k8s pkg/controller/podautoscaler horizontal.go (computeReplicasForMetrics: the highest
// proposal of all metrics, normalizeDesiredReplicasWithBehaviors,
// stabilizeRecommendationWithBehaviors, convertDesiredReplicasWithBehaviorRate) and
// replica_calculator.go (GetExternalPerPodMetricReplicas / GetExternalMetricReplicas).

export type TriggerConfig = Pick<NatsJetStreamTrigger, 'stream' | 'consumer' | 'lagThreshold' | 'activationLagThreshold' | 'metricType'>;

export type ScalingConfig = Pick<
  ScaledObjectConfig,
  'cooldownPeriod' | 'initialCooldownPeriod' | 'minReplicaCount' | 'maxReplicaCount' | 'idleReplicaCount' | 'fallback' | 'behavior'
> & { triggers: TriggerConfig[] };

/** How reasons name a trigger. */
export const triggerLabel = (t: Pick<NatsJetStreamTrigger, 'stream' | 'consumer'>) => `${t.stream}/${t.consumer}`;

interface TimedValue {
  at: number;
  value: number;
}

export interface ScalerState {
  /** ScaledObject "creation" (start of the local autoscaler), for initialCooldownPeriod. */
  createdAt: number;
  /** KEDA status.lastActiveTime (ms). */
  lastActiveTime?: number;
  /** Consecutive failed reads per trigger (KEDA status.health[metric].numberOfFailures). */
  failures: number[];
  /** HPA's unstabilised recommendations. */
  recommendations: TimedValue[];
  /** HPA's scale events, for the policies' periods. */
  scaleUpEvents: TimedValue[];
  scaleDownEvents: TimedValue[];
}

export function initialState(now: number): ScalerState {
  return { createdAt: now, failures: [], recommendations: [], scaleUpEvents: [], scaleDownEvents: [] };
}

export type Observation = { lag: number } | { error: string };

export type DecisionKind =
  | 'activate' // KEDA 0 → max(min,1)
  | 'deactivate' // KEDA → idleReplicaCount/minReplicaCount after cooldown
  | 'min' // KEDA raises to minReplicaCount
  | 'idle' // at 0 and not active
  | 'cooldown' // inactive, waiting for cooldownPeriod (HPA still runs)
  | 'hpa' // HPA arithmetic
  | 'fallback' // HPA on KEDA's faked fallback metric
  | 'error'; // metric error, count kept

export interface Decision {
  from: number;
  to: number;
  /** Summed over the triggers that could be read; null if none could. Per trigger: `lags`. */
  lag: number | null;
  lags: (number | null)[];
  /** The triggers' errors, if any could not be read. */
  error?: string;
  active: boolean;
  by: 'keda' | 'hpa' | 'none';
  kind: DecisionKind;
  reason: string;
}

const sec = (s: number) => s * 1000;
const fmtS = (ms: number) => `${Math.max(0, Math.ceil(ms / 1000))}s`;
const round2 = (n: number) => Math.round(n * 100) / 100;

export function decide(
  cfg: ScalingConfig,
  prev: ScalerState,
  current: number,
  obs: Observation[],
  now: number,
): { decision: Decision; state: ScalerState } {
  if (obs.length !== cfg.triggers.length) throw new Error(`decide: ${obs.length} observations for ${cfg.triggers.length} triggers`);
  const state: ScalerState = {
    ...prev,
    recommendations: [...prev.recommendations],
    scaleUpEvents: [...prev.scaleUpEvents],
    scaleDownEvents: [...prev.scaleDownEvents],
  };
  // Reasons name the trigger only when there are several, so one-trigger reasons stay short.
  const several = cfg.triggers.length > 1;
  const named = (i: number, text: string) => (several ? `${triggerLabel(cfg.triggers[i]!)}: ${text}` : text);
  const lags = obs.map((o) => ('lag' in o ? o.lag : null));
  state.failures = obs.map((o, i) => ('error' in o ? (prev.failures[i] ?? 0) + 1 : 0));
  const errors = obs.flatMap((o, i) => ('error' in o ? [named(i, o.error)] : []));
  const error = errors.length ? errors.join('; ') : undefined;
  const read = lags.filter((l) => l !== null);
  const lag = read.length ? read.reduce((a, b) => a + b, 0) : null;
  const { minReplicaCount: min, idleReplicaCount: idle, fallback } = cfg;
  // An erroring trigger is not active (scale_handler); activity is lag > activation, strictly,
  // and the ScaledObject is active when any trigger is.
  const isActive = (i: number) => lags[i] !== null && lags[i]! > cfg.triggers[i]!.activationLagThreshold;
  const active = cfg.triggers.some((_, i) => isActive(i));
  const activity = (which: 'active' | 'idle') =>
    cfg.triggers
      .flatMap((t, i) => {
        if (lags[i] === null || isActive(i) !== (which === 'active')) return [];
        return [named(i, `lag ${lags[i]} ${which === 'active' ? '>' : '≤'} activationLagThreshold ${t.activationLagThreshold}`)];
      })
      .join(', ');
  const base = { from: current, lag, lags, error, active };
  const keda = (to: number, kind: DecisionKind, reason: string) => ({
    decision: { ...base, to, by: to === current ? ('none' as const) : ('keda' as const), kind, reason },
    state,
  });

  // --- KEDA executor (RequestScale); isError: any trigger could not be read ---
  let cooling: string | undefined;
  if (active) {
    state.lastActiveTime = now;
    if ((idle !== undefined && current < min) || current === 0) {
      const to = min > 0 ? min : 1;
      return keda(to, 'activate', `keda: active (${activity('active')}) → ${min > 0 ? 'minReplicaCount' : 'max(minReplicaCount,1)'}=${to}`);
    }
  } else if (error !== undefined && fallback && fallback.replicas !== 0) {
    // Nothing here: the HPA moves to fallback.replicas once failures > failureThreshold.
  } else if (error !== undefined && !fallback) {
    // Ready=False; no scale to zero on errors.
  } else if ((idle !== undefined && current > idle) || (current > 0 && min === 0)) {
    const to = idle ?? min;
    const elapsed =
      state.lastActiveTime === undefined
        ? now - state.createdAt > sec(cfg.initialCooldownPeriod)
        : now - state.lastActiveTime > sec(cfg.cooldownPeriod);
    if (elapsed) {
      const why = state.lastActiveTime === undefined ? `never active, initialCooldownPeriod ${cfg.initialCooldownPeriod}s passed` : `inactive for cooldownPeriod ${cfg.cooldownPeriod}s`;
      return keda(to, 'deactivate', `keda: ${why} (${activity('idle')}) → ${idle !== undefined ? 'idleReplicaCount' : 'minReplicaCount'} ${to}`);
    }
    const left = state.lastActiveTime === undefined ? state.createdAt + sec(cfg.initialCooldownPeriod) - now : state.lastActiveTime + sec(cfg.cooldownPeriod) - now;
    cooling = `keda: inactive, to ${to} in ${fmtS(left)} (cooldownPeriod ${cfg.cooldownPeriod}s)`;
  } else if (idle === undefined && current < min) {
    return keda(min, 'min', `keda: not active, below minReplicaCount → ${min}`);
  }

  if (current === 0) {
    // An HPA whose target is at 0 replicas is disabled; only KEDA acts from 0.
    if (error !== undefined) return keda(0, 'error', `error: ${error}; keeping 0`);
    return keda(0, 'idle', `keda: not active (${activity('idle')})`);
  }

  // --- HPA (1 ↔ N): one external metric per trigger, each proposes a count (computeReplicasForMetrics) ---
  const proposals = cfg.triggers.map((t, i) => metricProposal(cfg, t, state.failures[i]!, current, obs[i]!));
  const valid = proposals.flatMap((p, i) => ('desired' in p ? [{ ...p, reason: named(i, p.reason), fallback: p.fallback && named(i, p.fallback) }] : []));
  const invalid = proposals.flatMap((p, i) => ('invalid' in p ? [named(i, p.invalid)] : []));
  const highest = Math.max(...valid.map((p) => p.desired));
  // The HPA acts on the highest valid proposal, unless every metric is invalid or some are and
  // that proposal would scale down: then it keeps the count (an unread trigger is never idle).
  if (valid.length === 0 || (invalid.length && highest < current)) {
    const why = valid.length ? ` (no scale-down while a metric is invalid: ${valid.map((p) => p.reason).join(', ')})` : '';
    return { decision: { ...base, to: current, by: 'none', kind: 'error', reason: `error: ${invalid.join('; ')}; keeping ${current}${why}` }, state };
  }
  const metric = { desired: highest, reason: several ? `hpa: max(${valid.map((p) => p.reason).join(', ')})=${highest}` : `hpa: ${valid[0]!.reason}` };
  const fallbacks = valid.flatMap((p) => (p.fallback ? [p.fallback] : []));
  const prefix = `${invalid.length ? `error: ${invalid.join('; ')}; ` : ''}${fallbacks.length ? `fallback: ${fallbacks.join('; ')}; ` : ''}`;
  const kind: DecisionKind = fallbacks.length ? 'fallback' : cooling ? 'cooldown' : 'hpa';
  const hpa = hpaReplicas(cfg, state, current, metric, now);
  const reason = `${prefix}${hpa.reason}${cooling ? `; ${cooling}` : ''}`;
  return {
    decision: { ...base, to: hpa.to, by: hpa.to === current ? 'none' : 'hpa', kind, reason },
    state,
  };
}

type Proposal = { desired: number; reason: string; fallback?: string } | { invalid: string };

/** One trigger's metric as the HPA sees it: its lag, KEDA's faked fallback metric, or an error. */
function metricProposal(cfg: ScalingConfig, t: TriggerConfig, failures: number, current: number, obs: Observation): Proposal {
  if ('lag' in obs) return metricReplicas(t, cfg.behavior, current, obs.lag);
  const fb = fallbackReplicas(cfg, t, failures, current);
  if (fb === undefined) {
    const pending = cfg.fallback && t.metricType === 'AverageValue' ? ` (failure ${failures}, fallback after ${cfg.fallback.failureThreshold})` : '';
    return { invalid: `${obs.error}${pending}` };
  }
  // KEDA serves lagThreshold × replicas as the metric (pkg/fallback doFallback).
  const metric = t.lagThreshold * fb;
  return { ...metricReplicas(t, cfg.behavior, current, metric), fallback: `${failures} failures > failureThreshold ${cfg.fallback!.failureThreshold}, metric = ${t.lagThreshold}×${fb}` };
}

/** KEDA pkg/fallback, per trigger: the replica count whose metric is faked, or undefined when not falling back. */
function fallbackReplicas(cfg: ScalingConfig, t: TriggerConfig, failures: number, current: number): number | undefined {
  const fb = cfg.fallback;
  if (!fb || t.metricType !== 'AverageValue') return undefined;
  if (!(failures > fb.failureThreshold)) return undefined;
  switch (fb.behavior) {
    case 'currentReplicas':
      return current;
    case 'currentReplicasIfHigher':
      return Math.max(current, fb.replicas);
    case 'currentReplicasIfLower':
      return Math.min(current, fb.replicas);
    default:
      return fb.replicas;
  }
}

function hpaReplicas(cfg: ScalingConfig, state: ScalerState, current: number, m: { desired: number; reason: string }, now: number): { to: number; reason: string } {
  const hpaMin = Math.max(cfg.minReplicaCount, 1);
  const max = cfg.maxReplicaCount;
  const b = cfg.behavior;
  let to: number;
  let reason: string;
  if (current > max) {
    to = max;
    reason = `hpa: ${current} above maxReplicaCount → ${max}`;
  } else if (current < hpaMin) {
    to = hpaMin;
    reason = `hpa: ${current} below minimum → ${hpaMin}`;
  } else {
    reason = m.reason;
    const stab = stabilize(b, state, current, m.desired, now);
    if (stab !== m.desired) {
      reason +=
        stab > m.desired
          ? `, held at ${stab} by scaleDown stabilization (${b.scaleDown.stabilizationWindowSeconds}s)`
          : `, held at ${stab} by scaleUp stabilization (${b.scaleUp.stabilizationWindowSeconds}s)`;
    }
    const rated = rateLimit(b, state, current, stab, hpaMin, max, now);
    to = rated.to;
    if (rated.note) reason += `, ${rated.note}`;
  }
  if (to !== current) {
    (to > current ? state.scaleUpEvents : state.scaleDownEvents).push({ at: now, value: Math.abs(to - current) });
  }
  prune(b, state, now);
  return { to, reason };
}

/** replica_calculator.go for one external metric, with the (per-direction) tolerance. */
function metricReplicas(trigger: TriggerConfig, b: Behavior, current: number, metric: number): { desired: number; reason: string } {
  const t = trigger.lagThreshold;
  const up = b.scaleUp.tolerance;
  const down = b.scaleDown.tolerance;
  if (trigger.metricType === 'Value') {
    const ratio = metric / t;
    if (1 - down <= ratio && ratio <= 1 + up) return { desired: current, reason: `${metric}/${t}=${round2(ratio)} within tolerance, keep ${current}` };
    const desired = Math.ceil(ratio * current);
    return { desired, reason: `ceil(${current}×${metric}/${t})=${desired}` };
  }
  const ratio = metric / (t * current);
  if (1 - down <= ratio && ratio <= 1 + up) {
    return { desired: current, reason: `${metric}/(${t}×${current})=${round2(ratio)} within tolerance, keep ${current}` };
  }
  const desired = Math.ceil(metric / t);
  return { desired, reason: `ceil(${metric}/${t})=${desired}` };
}

/** stabilizeRecommendationWithBehaviors: up → min of the window, down → max of the window. */
function stabilize(b: Behavior, state: ScalerState, current: number, desired: number, now: number): number {
  const upCutoff = now - sec(b.scaleUp.stabilizationWindowSeconds);
  const downCutoff = now - sec(b.scaleDown.stabilizationWindowSeconds);
  let upRec = desired;
  let downRec = desired;
  for (const r of state.recommendations) {
    if (r.at > upCutoff) upRec = Math.min(upRec, r.value);
    if (r.at > downCutoff) downRec = Math.max(downRec, r.value);
  }
  state.recommendations.push({ at: now, value: desired });
  let rec = current;
  if (rec < upRec) rec = upRec;
  if (rec > downRec) rec = downRec;
  return rec;
}

function changeInPeriod(events: TimedValue[], periodSeconds: number, now: number): number {
  const cutoff = now - sec(periodSeconds);
  return events.filter((e) => e.at > cutoff).reduce((sum, e) => sum + e.value, 0);
}

function describePolicies(r: ScalingRules): string {
  const p = r.policies.map((x) => `${x.type} ${x.value}${x.type === 'Percent' ? '%' : ''}/${x.periodSeconds}s`).join(', ');
  return `${r.selectPolicy} of ${p || 'no policies'}`;
}

/** calculateScaleUpLimitWithScalingRules. */
export function scaleUpLimit(current: number, up: TimedValue[], down: TimedValue[], rules: ScalingRules, now: number): number {
  if (rules.selectPolicy === 'Disabled') return current;
  const pick = rules.selectPolicy === 'Min' ? Math.min : Math.max;
  let result = rules.selectPolicy === 'Min' ? Infinity : -Infinity;
  for (const p of rules.policies) {
    const start = current - changeInPeriod(up, p.periodSeconds, now) + changeInPeriod(down, p.periodSeconds, now);
    const proposed = p.type === 'Pods' ? start + p.value : Math.ceil(start * (1 + p.value / 100));
    result = pick(result, proposed);
  }
  return Number.isFinite(result) ? result : current;
}

/** calculateScaleDownLimitWithBehaviors. */
export function scaleDownLimit(current: number, up: TimedValue[], down: TimedValue[], rules: ScalingRules, now: number): number {
  if (rules.selectPolicy === 'Disabled') return current;
  const pick = rules.selectPolicy === 'Min' ? Math.max : Math.min;
  let result = rules.selectPolicy === 'Min' ? -Infinity : Infinity;
  for (const p of rules.policies) {
    const start = current - changeInPeriod(up, p.periodSeconds, now) + changeInPeriod(down, p.periodSeconds, now);
    const proposed = p.type === 'Pods' ? start - p.value : Math.trunc(start * (1 - p.value / 100));
    result = pick(result, proposed);
  }
  return Number.isFinite(result) ? result : current;
}

/** convertDesiredReplicasWithBehaviorRate. */
function rateLimit(b: Behavior, state: ScalerState, current: number, desired: number, hpaMin: number, max: number, now: number): { to: number; note?: string } {
  if (desired > current) {
    const limit = Math.max(scaleUpLimit(current, state.scaleUpEvents, state.scaleDownEvents, b.scaleUp, now), current);
    if (max > limit) {
      if (desired > limit) return { to: limit, note: `limited to ${limit} by scaleUp policies (${describePolicies(b.scaleUp)})` };
    } else if (desired > max) {
      return { to: max, note: `capped at maxReplicaCount ${max}` };
    }
  } else if (desired < current) {
    const limit = Math.min(scaleDownLimit(current, state.scaleUpEvents, state.scaleDownEvents, b.scaleDown, now), current);
    if (hpaMin < limit) {
      if (desired < limit) return { to: limit, note: `limited to ${limit} by scaleDown policies (${describePolicies(b.scaleDown)})` };
    } else if (desired < hpaMin) {
      return { to: hpaMin, note: `raised to minimum ${hpaMin}` };
    }
  }
  return { to: desired };
}

function prune(b: Behavior, state: ScalerState, now: number): void {
  const longestPeriod = Math.max(0, ...b.scaleUp.policies.map((p) => p.periodSeconds), ...b.scaleDown.policies.map((p) => p.periodSeconds));
  const eventCutoff = now - sec(longestPeriod);
  state.scaleUpEvents = state.scaleUpEvents.filter((e) => e.at > eventCutoff);
  state.scaleDownEvents = state.scaleDownEvents.filter((e) => e.at > eventCutoff);
  const recCutoff = now - sec(Math.max(b.scaleUp.stabilizationWindowSeconds, b.scaleDown.stabilizationWindowSeconds));
  // Keep the newest one: it is this cycle's recommendation.
  state.recommendations = state.recommendations.filter((r, i, all) => r.at > recCutoff || i === all.length - 1);
}
