import type { Behavior, ScaledObjectConfig, ScalingRules } from './scaledobject.ts';

// Pure replica arithmetic: what KEDA's executor (0↔1, scale to zero, fallback) and the HPA
// controller (1↔N) would do with one lag reading. No I/O, no clock: the caller passes `now` and
// keeps the returned state for the next call.
//
// Sources: keda pkg/scaling/executor/scale_scaledobjects.go (RequestScale), pkg/fallback;
// k8s pkg/controller/podautoscaler horizontal.go (normalizeDesiredReplicasWithBehaviors,
// stabilizeRecommendationWithBehaviors, convertDesiredReplicasWithBehaviorRate) and
// replica_calculator.go (GetExternalPerPodMetricReplicas / GetExternalMetricReplicas).

export type ScalingConfig = Pick<
  ScaledObjectConfig,
  'cooldownPeriod' | 'initialCooldownPeriod' | 'minReplicaCount' | 'maxReplicaCount' | 'idleReplicaCount' | 'fallback' | 'behavior'
> & { trigger: Pick<ScaledObjectConfig['trigger'], 'lagThreshold' | 'activationLagThreshold' | 'metricType'> };

interface TimedValue {
  at: number;
  value: number;
}

export interface ScalerState {
  /** ScaledObject "creation" (start of the local autoscaler), for initialCooldownPeriod. */
  createdAt: number;
  /** KEDA status.lastActiveTime (ms). */
  lastActiveTime?: number;
  /** Consecutive failed metric reads (KEDA status.health numberOfFailures). */
  failures: number;
  /** HPA's unstabilised recommendations. */
  recommendations: TimedValue[];
  /** HPA's scale events, for the policies' periods. */
  scaleUpEvents: TimedValue[];
  scaleDownEvents: TimedValue[];
}

export function initialState(now: number): ScalerState {
  return { createdAt: now, failures: 0, recommendations: [], scaleUpEvents: [], scaleDownEvents: [] };
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
  lag: number | null;
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
  obs: Observation,
  now: number,
): { decision: Decision; state: ScalerState } {
  const state: ScalerState = {
    ...prev,
    recommendations: [...prev.recommendations],
    scaleUpEvents: [...prev.scaleUpEvents],
    scaleDownEvents: [...prev.scaleDownEvents],
  };
  const error = 'error' in obs ? obs.error : undefined;
  const lag = 'lag' in obs ? obs.lag : null;
  state.failures = error === undefined ? 0 : state.failures + 1;
  const { minReplicaCount: min, idleReplicaCount: idle, fallback } = cfg;
  const { activationLagThreshold } = cfg.trigger;
  // An erroring trigger is not active (scale_handler); activity is lag > activation, strictly.
  const active = lag !== null && lag > activationLagThreshold;
  const base = { from: current, lag, error, active };
  const keda = (to: number, kind: DecisionKind, reason: string) => ({
    decision: { ...base, to, by: to === current ? ('none' as const) : ('keda' as const), kind, reason },
    state,
  });

  // --- KEDA executor (RequestScale) ---
  let cooling: string | undefined;
  if (active) {
    state.lastActiveTime = now;
    if ((idle !== undefined && current < min) || current === 0) {
      const to = min > 0 ? min : 1;
      return keda(to, 'activate', `keda: active (lag ${lag} > activationLagThreshold ${activationLagThreshold}) → ${min > 0 ? 'minReplicaCount' : 'max(minReplicaCount,1)'}=${to}`);
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
      return keda(to, 'deactivate', `keda: ${why} (lag ${lag} ≤ activationLagThreshold ${activationLagThreshold}) → ${idle !== undefined ? 'idleReplicaCount' : 'minReplicaCount'} ${to}`);
    }
    const left = state.lastActiveTime === undefined ? state.createdAt + sec(cfg.initialCooldownPeriod) - now : state.lastActiveTime + sec(cfg.cooldownPeriod) - now;
    cooling = `keda: inactive, to ${to} in ${fmtS(left)} (cooldownPeriod ${cfg.cooldownPeriod}s)`;
  } else if (idle === undefined && current < min) {
    return keda(min, 'min', `keda: not active, below minReplicaCount → ${min}`);
  }

  if (current === 0) {
    // An HPA whose target is at 0 replicas is disabled; only KEDA acts from 0.
    if (error !== undefined) return keda(0, 'error', `error: ${error}; keeping 0`);
    return keda(0, 'idle', `keda: not active (lag ${lag} ≤ activationLagThreshold ${activationLagThreshold})`);
  }

  // --- HPA (1 ↔ N) ---
  let metric = lag;
  let prefix = '';
  let kind: DecisionKind = cooling ? 'cooldown' : 'hpa';
  if (error !== undefined) {
    const fb = fallbackReplicas(cfg, state.failures, current);
    if (fb === undefined) {
      const pending = fallback && cfg.trigger.metricType === 'AverageValue' ? ` (failure ${state.failures}, fallback after ${fallback.failureThreshold})` : '';
      return { decision: { ...base, to: current, by: 'none', kind: 'error', reason: `error: ${error}; keeping ${current}${pending}` }, state };
    }
    // KEDA serves lagThreshold × replicas as the metric (pkg/fallback doFallback).
    metric = cfg.trigger.lagThreshold * fb;
    kind = 'fallback';
    prefix = `fallback: ${state.failures} failures > failureThreshold ${fallback!.failureThreshold}, metric = ${cfg.trigger.lagThreshold}×${fb}; `;
  }
  const hpa = hpaReplicas(cfg, state, current, metric!, now);
  const reason = `${prefix}${hpa.reason}${cooling ? `; ${cooling}` : ''}`;
  return {
    decision: { ...base, to: hpa.to, by: hpa.to === current ? 'none' : 'hpa', kind, reason },
    state,
  };
}

/** KEDA pkg/fallback: the replica count whose metric is faked, or undefined when not falling back. */
function fallbackReplicas(cfg: ScalingConfig, failures: number, current: number): number | undefined {
  const fb = cfg.fallback;
  if (!fb || cfg.trigger.metricType !== 'AverageValue') return undefined;
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

function hpaReplicas(cfg: ScalingConfig, state: ScalerState, current: number, metric: number, now: number): { to: number; reason: string } {
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
    const m = metricReplicas(cfg, current, metric);
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

/** replica_calculator.go for an external metric, with the (per-direction) tolerance. */
function metricReplicas(cfg: ScalingConfig, current: number, metric: number): { desired: number; reason: string } {
  const t = cfg.trigger.lagThreshold;
  const up = cfg.behavior.scaleUp.tolerance;
  const down = cfg.behavior.scaleDown.tolerance;
  if (cfg.trigger.metricType === 'Value') {
    const ratio = metric / t;
    if (1 - down <= ratio && ratio <= 1 + up) return { desired: current, reason: `hpa: ${metric}/${t}=${round2(ratio)} within tolerance, keep ${current}` };
    const desired = Math.ceil(ratio * current);
    return { desired, reason: `hpa: ceil(${current}×${metric}/${t})=${desired}` };
  }
  const ratio = metric / (t * current);
  if (1 - down <= ratio && ratio <= 1 + up) {
    return { desired: current, reason: `hpa: ${metric}/(${t}×${current})=${round2(ratio)} within tolerance, keep ${current}` };
  }
  const desired = Math.ceil(metric / t);
  return { desired, reason: `hpa: ceil(${metric}/${t})=${desired}` };
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
