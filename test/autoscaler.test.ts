import { describe, expect, it } from 'vitest';
import { decide, initialState, type Decision, type Observation, type ScalerState } from './local/autoscaler/decide.ts';
import { lagFromJsz, jszUrl } from './local/autoscaler/jsz.ts';
import { defaultBehavior, parseScaledObject, scaledObjectDocuments, type ScaledObjectConfig } from './local/autoscaler/scaledobject.ts';
import { formatDecision, formatStatus } from './local/autoscaler/status.ts';

// Worked cases for the KEDA + HPA arithmetic (platform.md 1.5, 1.8), run through the pure decide().

function so(spec: Record<string, unknown> = {}, metadata: Record<string, unknown> = {}) {
  return {
    apiVersion: 'keda.sh/v1alpha1',
    kind: 'ScaledObject',
    metadata: { name: 'collect', namespace: 'telemetry' },
    spec: {
      scaleTargetRef: { name: 'collect' },
      triggers: [
        {
          type: 'nats-jetstream',
          metadata: { natsServerMonitoringEndpoint: 'nats.nats.svc:8222', account: '$G', stream: 'TELEMETRY', consumer: 'collect', ...metadata },
        },
      ],
      ...spec,
    },
  };
}

const cfgOf = (spec: Record<string, unknown> = {}, metadata: Record<string, unknown> = {}) => parseScaledObject(so(spec, metadata));

/** Runs decide() over a sequence of (seconds, observation) and tracks replicas like a pool would. */
class Sim {
  state: ScalerState;
  constructor(
    readonly cfg: ScaledObjectConfig,
    public replicas = 0,
    readonly t0 = 1_000_000,
  ) {
    this.state = initialState(t0);
  }
  /** One observation (or lag) per trigger, in the ScaledObject's order. */
  at(seconds: number, ...obs: (Observation | number)[]) {
    const o = obs.map((x) => (typeof x === 'number' ? { lag: x } : x));
    const { decision, state } = decide(this.cfg, this.state, this.replicas, o, this.t0 + seconds * 1000);
    this.state = state;
    this.replicas = decision.to;
    return decision;
  }
}

describe('ScaledObject parsing', () => {
  it('applies KEDA defaults and the HPA default behaviour', () => {
    const c = cfgOf();
    expect(c).toMatchObject({
      name: 'collect',
      target: 'collect',
      pollingInterval: 30,
      cooldownPeriod: 300,
      initialCooldownPeriod: 0,
      minReplicaCount: 0,
      maxReplicaCount: 100,
      triggers: [{ lagThreshold: 10, activationLagThreshold: 0, metricType: 'AverageValue', useHttps: false, monitoringEndpoint: 'nats.nats.svc:8222' }],
    });
    expect(c.behavior).toEqual(defaultBehavior());
    expect(c.behavior.scaleUp).toMatchObject({ stabilizationWindowSeconds: 0, selectPolicy: 'Max' });
    expect(c.behavior.scaleDown).toMatchObject({ stabilizationWindowSeconds: 300, policies: [{ type: 'Percent', value: 100, periodSeconds: 15 }] });
  });

  it('merges a partial behavior over the defaults and applies local overrides', () => {
    const doc = so({
      pollingInterval: 5,
      advanced: { horizontalPodAutoscalerConfig: { behavior: { scaleUp: { policies: [{ type: 'Pods', value: 10, periodSeconds: 5 }] } } } },
    });
    const c = parseScaledObject(doc, { monitorEndpoint: '127.0.0.1:9999', cooldownPeriod: 2, pollingInterval: 0.5 });
    expect(c.behavior.scaleUp).toEqual({ stabilizationWindowSeconds: 0, selectPolicy: 'Max', policies: [{ type: 'Pods', value: 10, periodSeconds: 5 }], tolerance: 0.1 });
    expect(c.behavior.scaleDown).toEqual(defaultBehavior().scaleDown);
    expect(c.triggers[0]!.monitoringEndpoint).toBe('127.0.0.1:9999');
    expect(c.cooldownPeriod).toBe(2);
    expect(c.pollingInterval).toBe(0.5);
  });

  it('rejects unquoted numbers in trigger metadata, bad bounds and missing fields', () => {
    expect(() => cfgOf({}, { lagThreshold: 10 })).toThrow(/lagThreshold must be a string/);
    expect(() => cfgOf({}, { lagThreshold: 'ten' })).toThrow(/integer string/);
    expect(() => cfgOf({}, { lagThreshold: '0' })).toThrow(/lagThreshold must be ≥ 1/);
    expect(() => cfgOf({ minReplicaCount: 5, maxReplicaCount: 2 })).toThrow(/minReplicaCount 5 > maxReplicaCount 2/);
    expect(() => cfgOf({}, { consumer: undefined })).toThrow(/consumer/);
    // KEDA would count a cpu trigger too: the local autoscaler refuses it rather than ignore it.
    const cpu = { type: 'cpu', metadata: { value: '50' } };
    expect(() => parseScaledObject({ ...so(), spec: { ...so().spec, triggers: [cpu] } })).toThrow(/only nats-jetstream triggers, found cpu/);
    expect(() => parseScaledObject({ ...so(), spec: { ...so().spec, triggers: [...so().spec.triggers, cpu] } })).toThrow(/found cpu/);
  });

  it('selects only ScaledObjects from multi-document YAML', () => {
    const text = [
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}',
      'apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: ingest}\nspec:\n  scaleTargetRef: {name: ingest}\n  triggers:\n  - type: nats-jetstream\n    metadata: {natsServerMonitoringEndpoint: "n:8222", account: "$G", stream: CSV_UPLOADS, consumer: ingest, lagThreshold: "2"}',
    ].join('\n---\n');
    const docs = scaledObjectDocuments(text);
    expect(docs).toHaveLength(1);
    expect(parseScaledObject(docs[0]).triggers).toMatchObject([{ stream: 'CSV_UPLOADS', lagThreshold: 2 }]);
  });
});

describe('HPA arithmetic (1 ↔ N)', () => {
  it('lag 95, threshold 10, 8 replicas → 10 (ratio 1.19 > 1.1)', () => {
    const sim = new Sim(cfgOf(), 8);
    const d = sim.at(0, 95);
    expect(d.to).toBe(10);
    expect(d.by).toBe('hpa');
    expect(d.reason).toBe('hpa: ceil(95/10)=10');
  });

  it('lag 85, 8 replicas → stays 8 (ratio 1.06 within tolerance 0.1)', () => {
    const d = new Sim(cfgOf(), 8).at(0, 85);
    expect(d.to).toBe(8);
    expect(d.reason).toMatch(/1\.06 within tolerance, keep 8/);
  });

  it('1 replica, lag 1000, default behaviour → first step max 5, then max(+4, ×2) per 15 s', () => {
    const sim = new Sim(cfgOf(), 1);
    const first = sim.at(0, 1000);
    expect(first.to).toBe(5);
    expect(first.reason).toMatch(/ceil\(1000\/10\)=100, limited to 5 by scaleUp policies/);
    expect(sim.at(10, 1000).to).toBe(5); // still inside the 15 s period that started at 1
    expect(sim.at(16, 1000).to).toBe(10); // period start 5: max(5+4, 5×2)
    expect(sim.at(32, 1000).to).toBe(20);
  });

  it('clamps to maxReplicaCount and to max(minReplicaCount, 1)', () => {
    const c = cfgOf({ minReplicaCount: 2, maxReplicaCount: 4, advanced: { horizontalPodAutoscalerConfig: { behavior: { scaleDown: { stabilizationWindowSeconds: 0 } } } } });
    expect(new Sim(c, 4).at(0, 1000)).toMatchObject({ to: 4 });
    expect(new Sim(c, 3).at(0, 1000)).toMatchObject({ to: 4, reason: expect.stringMatching(/capped at maxReplicaCount 4/) });
    expect(new Sim(c, 6).at(0, 10)).toMatchObject({ to: 4, reason: expect.stringMatching(/above maxReplicaCount/) });
    expect(new Sim(c, 4).at(0, 0)).toMatchObject({ to: 2, reason: expect.stringMatching(/raised to minimum 2/) });
    // min 0 → HPA minimum is still 1; only KEDA goes to 0.
    const c0 = cfgOf({ advanced: { horizontalPodAutoscalerConfig: { behavior: { scaleDown: { stabilizationWindowSeconds: 0 } } } } });
    const sim = new Sim(c0, 3);
    sim.at(0, 30);
    expect(sim.at(1, 0)).toMatchObject({ to: 1, kind: 'cooldown' });
  });

  it('scale-down stabilisation window holds the highest recent recommendation', () => {
    const sim = new Sim(cfgOf({ minReplicaCount: 1 }), 10);
    expect(sim.at(0, 100).to).toBe(10);
    const held = sim.at(60, 20);
    expect(held.to).toBe(10);
    expect(held.reason).toMatch(/ceil\(20\/10\)=2, held at 10 by scaleDown stabilization \(300s\)/);
    expect(sim.at(200, 20).to).toBe(10);
    expect(sim.at(301, 20).to).toBe(2); // the 100 recommendation left the window; 100 %/15 s allows it
  });

  it('scale-up stabilisation window uses the lowest recent recommendation', () => {
    const c = cfgOf({ minReplicaCount: 1, advanced: { horizontalPodAutoscalerConfig: { behavior: { scaleUp: { stabilizationWindowSeconds: 60 } } } } });
    const sim = new Sim(c, 2);
    expect(sim.at(0, 20).to).toBe(2);
    expect(sim.at(30, 80).to).toBe(2); // min(2, 8) within 60 s
    expect(sim.at(61, 80).to).toBe(6); // window now holds only 8 → 8, limited by +4 pods
  });

  it('honours Pods/Percent policies with selectPolicy Min and Disabled', () => {
    const b = (scaleUp: unknown, scaleDown?: unknown) => ({ minReplicaCount: 1, advanced: { horizontalPodAutoscalerConfig: { behavior: { scaleUp, scaleDown } } } });
    const minPolicy = cfgOf(b({ selectPolicy: 'Min', policies: [{ type: 'Pods', value: 3, periodSeconds: 60 }, { type: 'Percent', value: 50, periodSeconds: 60 }] }));
    expect(new Sim(minPolicy, 4).at(0, 1000).to).toBe(6); // min(4+3, ceil(4×1.5)=6)
    const disabled = cfgOf(b({ selectPolicy: 'Disabled' }));
    expect(new Sim(disabled, 4).at(0, 1000).to).toBe(4);
    const slowDown = cfgOf(b(undefined, { stabilizationWindowSeconds: 0, policies: [{ type: 'Pods', value: 1, periodSeconds: 60 }] }));
    const sim = new Sim(slowDown, 5);
    expect(sim.at(0, 0).to).toBe(4);
    expect(sim.at(30, 0).to).toBe(4); // 1 pod per 60 s already used
    expect(sim.at(61, 0).to).toBe(3);
  });
});

describe('KEDA activation and scale to zero (0 ↔ 1)', () => {
  it('threshold 10, activation 50, lag 40 at 0 → stays 0; lag 51 → 1', () => {
    const sim = new Sim(cfgOf({}, { lagThreshold: '10', activationLagThreshold: '50' }), 0);
    const idle = sim.at(0, 40);
    expect(idle).toMatchObject({ to: 0, active: false, kind: 'idle' });
    expect(idle.reason).toMatch(/not active \(lag 40 ≤ activationLagThreshold 50\)/);
    expect(sim.at(30, 50).to).toBe(0); // strictly greater
    expect(sim.at(60, 51)).toMatchObject({ to: 1, by: 'keda', kind: 'activate', active: true });
  });

  it('activates to minReplicaCount when it is above 1, and ignores activation when min ≥ 1', () => {
    expect(new Sim(cfgOf({ minReplicaCount: 3 }), 0).at(0, 5)).toMatchObject({ to: 3, kind: 'activate' });
    const sim = new Sim(cfgOf({ minReplicaCount: 2 }, { activationLagThreshold: '50' }), 0);
    expect(sim.at(0, 0)).toMatchObject({ to: 2, kind: 'min' });
    expect(sim.at(10_000, 0).to).toBe(2); // never to zero
  });

  it('scales to zero only after cooldownPeriod since the last active poll', () => {
    const sim = new Sim(cfgOf({ cooldownPeriod: 300 }), 0);
    expect(sim.at(0, 25).to).toBe(1);
    expect(sim.at(30, 25).to).toBe(3);
    expect(sim.at(60, 0)).toMatchObject({ to: 3, kind: 'cooldown', reason: expect.stringMatching(/keda: inactive, to 0 in 270s/) });
    expect(sim.at(329, 0).to).toBe(3); // HPA scale-down stabilisation (300 s) still holds the 3
    // Exactly 300 s after the last active poll (t=30): the HPA may go to its minimum 1, KEDA not yet to 0.
    expect(sim.at(330, 0)).toMatchObject({ to: 1, by: 'hpa', kind: 'cooldown' });
    const d = sim.at(331, 0);
    expect(d).toMatchObject({ to: 0, by: 'keda', kind: 'deactivate' });
    expect(d.reason).toMatch(/inactive for cooldownPeriod 300s/);
  });

  it('a new active poll during cooldown restarts the countdown', () => {
    const sim = new Sim(cfgOf({ cooldownPeriod: 100 }), 0);
    sim.at(0, 5);
    sim.at(50, 0);
    sim.at(90, 1); // active again
    expect(sim.at(150, 0).to).toBe(1);
    expect(sim.at(191, 0).to).toBe(0);
  });

  it('uses idleReplicaCount instead of 0 when set', () => {
    const sim = new Sim(cfgOf({ idleReplicaCount: 0, minReplicaCount: 2, cooldownPeriod: 10 }), 0);
    expect(sim.at(0, 5).to).toBe(2);
    expect(sim.at(10, 0).to).toBe(2);
    expect(sim.at(11, 0)).toMatchObject({ to: 0, kind: 'deactivate' });
  });
});

describe('errors and fallback', () => {
  const err: Observation = { error: 'consumer "collect" not found in stream "TELEMETRY"' };

  it('keeps the current count on errors and never scales to zero without fallback', () => {
    const sim = new Sim(cfgOf({ cooldownPeriod: 10 }), 0);
    sim.at(0, 50);
    sim.at(1, 50);
    expect(sim.replicas).toBe(5);
    for (const t of [20, 40, 400]) expect(sim.at(t, err)).toMatchObject({ to: 5, kind: 'error', active: false });
    expect(sim.at(400, err).reason).toMatch(/^error: consumer "collect" not found in stream "TELEMETRY"; keeping 5$/);
    expect(new Sim(cfgOf(), 0).at(0, err)).toMatchObject({ to: 0, kind: 'error' });
  });

  it('goes to fallback.replicas after more than failureThreshold consecutive failures (replicas ≥ 1 only)', () => {
    const c = cfgOf({ fallback: { failureThreshold: 3, replicas: 6 } });
    const sim = new Sim(c, 2);
    for (let i = 1; i <= 3; i++) expect(sim.at(i, err)).toMatchObject({ to: 2, kind: 'error', reason: expect.stringMatching(`failure ${i}, fallback after 3`) });
    const fb = sim.at(4, err);
    expect(fb).toMatchObject({ to: 6, kind: 'fallback', by: 'hpa' });
    expect(fb.reason).toMatch(/^fallback: 4 failures > failureThreshold 3, metric = 10×6; hpa: ceil\(60\/10\)=6/);
    // A success resets the failure count.
    sim.at(5, 60);
    expect(sim.state.failures).toEqual([0]);
    // At 0 replicas the HPA is off: no fallback.
    const zero = new Sim(c, 0);
    for (let i = 1; i <= 6; i++) expect(zero.at(i, err).to).toBe(0);
  });

  it('fallback behavior currentReplicasIfHigher keeps a higher count', () => {
    const c = cfgOf({ fallback: { failureThreshold: 0, replicas: 3, behavior: 'currentReplicasIfHigher' } });
    expect(new Sim(c, 8).at(0, err)).toMatchObject({ to: 8, kind: 'fallback' });
    expect(new Sim(c, 1).at(0, err)).toMatchObject({ to: 3, kind: 'fallback' });
  });
});

describe('several triggers (collect: TELEMETRY batches and ROLLUPS passes)', () => {
  const err: Observation = { error: 'consumer "rollups" not found in stream "ROLLUPS"' };
  // Shaped like keda/collect/scaledobject.yaml.
  const two = (spec: Record<string, unknown> = {}) => {
    const doc = so(spec, { lagThreshold: '1000' });
    const rollups = {
      type: 'nats-jetstream',
      name: 'collect-rollups-lag',
      metadata: { natsServerMonitoringEndpoint: 'nats.nats.svc:8222', account: '$G', stream: 'ROLLUPS', consumer: 'rollups', lagThreshold: '100' },
    };
    return parseScaledObject({ ...doc, spec: { ...doc.spec, triggers: [{ ...doc.spec.triggers[0], name: 'collect-lag' }, rollups] } });
  };

  it('parses every trigger in order and rejects repeated trigger names, as KEDA does', () => {
    expect(two().triggers).toMatchObject([
      { name: 'collect-lag', stream: 'TELEMETRY', consumer: 'collect', lagThreshold: 1000 },
      { name: 'collect-rollups-lag', stream: 'ROLLUPS', consumer: 'rollups', lagThreshold: 100 },
    ]);
    const doc = so();
    const t = { ...doc.spec.triggers[0], name: 'lag' };
    expect(() => parseScaledObject({ ...doc, spec: { ...doc.spec, triggers: [t, t] } })).toThrow(/trigger name lag is used twice/);
  });

  it('is active when any trigger is: lag on the second alone wakes it from zero', () => {
    const sim = new Sim(two(), 0);
    const idle = sim.at(0, 0, 0);
    expect(idle).toMatchObject({ to: 0, kind: 'idle', active: false, lag: 0, lags: [0, 0] });
    expect(idle.reason).toBe('keda: not active (TELEMETRY/collect: lag 0 ≤ activationLagThreshold 0, ROLLUPS/rollups: lag 0 ≤ activationLagThreshold 0)');
    const d = sim.at(10, 0, 3);
    expect(d).toMatchObject({ to: 1, by: 'keda', kind: 'activate', active: true, lag: 3, lags: [0, 3] });
    expect(d.reason).toBe('keda: active (ROLLUPS/rollups: lag 3 > activationLagThreshold 0) → max(minReplicaCount,1)=1');
  });

  it('the HPA takes the highest of the per-trigger counts, each with its own threshold and tolerance', () => {
    const d = new Sim(two(), 2).at(0, 2500, 350);
    expect(d).toMatchObject({ to: 4, by: 'hpa', kind: 'hpa' });
    expect(d.reason).toBe('hpa: max(TELEMETRY/collect: ceil(2500/1000)=3, ROLLUPS/rollups: ceil(350/100)=4)=4');
    expect(new Sim(two(), 2).at(0, 5500, 50).to).toBe(6);
    // 4200/(1000×4) = 1.05 is within tolerance (keep 4), which beats ceil(100/100) = 1.
    expect(new Sim(two(), 4).at(0, 4200, 100)).toMatchObject({ to: 4, reason: expect.stringMatching(/^hpa: max\(.*within tolerance, keep 4, .*=1\)=4$/) });
    // Lag only on the second trigger keeps the pods the first would release.
    const down = new Sim(two({ advanced: { horizontalPodAutoscalerConfig: { behavior: { scaleDown: { stabilizationWindowSeconds: 0 } } } } }), 5);
    expect(down.at(0, 0, 300).to).toBe(3);
  });

  it('an unreadable trigger falls back as a single one would; the readable one still counts', () => {
    const sim = new Sim(two({ fallback: { failureThreshold: 3, replicas: 6 } }), 2);
    // Before fallback: no scale-down while a metric is invalid, but scale-up on the readable one.
    for (let i = 1; i <= 3; i++) {
      const d = sim.at(i, 0, err);
      expect(d).toMatchObject({ to: 2, kind: 'error', lag: 0, lags: [0, null] });
      expect(d.reason).toMatch(`ROLLUPS/rollups: consumer "rollups" not found in stream "ROLLUPS" (failure ${i}, fallback after 3); keeping 2 (no scale-down`);
    }
    expect(sim.state.failures).toEqual([0, 3]);
    const fb = sim.at(4, 0, err);
    expect(fb).toMatchObject({ to: 6, kind: 'fallback', by: 'hpa', error: 'ROLLUPS/rollups: consumer "rollups" not found in stream "ROLLUPS"' });
    expect(fb.reason).toMatch(
      /^fallback: ROLLUPS\/rollups: 4 failures > failureThreshold 3, metric = 100×6; hpa: max\(TELEMETRY\/collect: ceil\(0\/1000\)=0, ROLLUPS\/rollups: ceil\(600\/100\)=6\)=6$/,
    );
    // The readable trigger asking for more wins over the fallback count.
    expect(sim.at(20, 9000, err)).toMatchObject({ to: 9, kind: 'fallback' });
    sim.at(21, 9000, 0);
    expect(sim.state.failures).toEqual([0, 0]);

    const up = new Sim(two({ fallback: { failureThreshold: 3, replicas: 6 } }), 2);
    expect(up.at(0, 5000, err)).toMatchObject({ to: 5, kind: 'hpa', error: expect.stringContaining('ROLLUPS/rollups: consumer') });
  });

  it('an unreadable trigger never counts as idle: no scale to zero without fallback, no wake-up on it alone', () => {
    const sim = new Sim(two({ cooldownPeriod: 10 }), 0);
    expect(sim.at(0, 0, err)).toMatchObject({ to: 0, kind: 'error', active: false });
    expect(sim.at(1, 3, err)).toMatchObject({ to: 1, kind: 'activate' });
    for (const t of [20, 40, 400]) expect(sim.at(t, 0, err)).toMatchObject({ to: 1, kind: 'error' });
    expect(sim.at(401, 0, 0)).toMatchObject({ to: 0, kind: 'deactivate' });
  });
});

describe('jsz lag and formatting', () => {
  const target = { monitoringEndpoint: '127.0.0.1:8222', account: '$G', stream: 'TELEMETRY', consumer: 'collect', useHttps: false };
  const body = {
    account_details: [
      { name: '$G', id: '$G', stream_detail: [{ name: 'TELEMETRY', consumer_detail: [{ name: 'collect', num_pending: 20, num_ack_pending: 5, num_redelivered: 9 }] }] },
    ],
  };

  it('builds the KEDA URL and sums num_pending + num_ack_pending', () => {
    expect(jszUrl(target)).toBe('http://127.0.0.1:8222/jsz?acc=%24G&config=true&consumers=true');
    expect(lagFromJsz(body, target)).toEqual({ lag: 25, numPending: 20, numAckPending: 5 });
  });

  it('reports a missing consumer, stream or account as KEDA ≥ 2.20 does', () => {
    const msg = 'consumer "collect" not found in stream "TELEMETRY"';
    expect(() => lagFromJsz(body, { ...target, consumer: 'collect' + 'x' })).toThrow('consumer "collectx" not found in stream "TELEMETRY"');
    expect(() => lagFromJsz({ account_details: [] }, target)).toThrow(msg);
    expect(() => lagFromJsz({}, target)).toThrow(msg);
  });

  it('prints one line per decision and a status table', () => {
    const d: Decision = { from: 1, to: 3, lag: 1234, lags: [1234], active: true, by: 'hpa', kind: 'hpa', reason: 'hpa: ceil(1234/500)=3' };
    expect(formatDecision('collect', d)).toBe('[autoscale] collect lag=1234 replicas 1→3 (hpa: ceil(1234/500)=3)');
    expect(formatDecision('collect', { ...d, lag: 1234, lags: [1234, null] })).toMatch(/^\[autoscale\] collect lag=1234,\? replicas 1→3/);
    const now = Date.parse('2025-01-01T00:01:00Z');
    const table = formatStatus(
      {
        pid: 42,
        startedAt: '2025-01-01T00:00:00.000Z',
        updatedAt: '2025-01-01T00:00:59.000Z',
        scaledObjects: [
          {
            scaledObject: 'collect', target: 'collect', minReplicaCount: 0, maxReplicaCount: 10, pollingInterval: 5, cooldownPeriod: 60, replicas: 3, lag: 1234, active: true, failures: 0,
            triggers: [{ stream: 'TELEMETRY', consumer: 'collect', lagThreshold: 500, activationLagThreshold: 0, lag: 1234, failures: 0 }],
            lastDecision: { ...d, at: '2025-01-01T00:00:30.000Z' },
            lastScale: { ...d, at: '2025-01-01T00:00:30.000Z' },
          },
          {
            scaledObject: 'two', target: 'two', minReplicaCount: 0, maxReplicaCount: 10, pollingInterval: 5, cooldownPeriod: 60, replicas: 0, lag: 7, active: true, failures: 0,
            triggers: [
              { stream: 'TELEMETRY', consumer: 'collect', lagThreshold: 1000, activationLagThreshold: 0, lag: 0, failures: 0 },
              { stream: 'ROLLUPS', consumer: 'rollups', lagThreshold: 100, activationLagThreshold: 0, lag: 7, failures: 0 },
            ],
          },
        ],
      },
      now,
    );
    const lines = table.split('\n');
    expect(lines[0]).toMatch(/autoscaler pid 42/);
    expect(lines[1]).toMatch(/^FUNCTION\s+REPLICAS\s+MIN\.\.MAX\s+LAG/);
    expect(lines[2]).toMatch(/^collect\s+3\s+0\.\.10\s+1234\s+500\s+yes\s+30s ago\s+hpa: ceil\(1234\/500\)=3$/);
    expect(lines[3]).toMatch(/^two\s+0\s+0\.\.10\s+0,7\s+1000,100\s+yes\s+-\s+-$/);
  });
});
