import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AckPolicy, connect, type JsMsg, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAutoscaler, formatStatus, type AutoscaleDecision, type WorkerPool } from './local/autoscaler/autoscaler.ts';
import { readConsumerLag } from './local/autoscaler/jsz.ts';
import { loadScaledObjects } from './local/autoscaler/scaledobject.ts';
import type { StatusSnapshot } from './local/autoscaler/status.ts';
import { CONSUMERS, STREAMS } from '../shared/names.ts';
import { waitFor } from './support/ports.ts';
import { startNats, type NatsServer } from './support/servers.ts';

// The jsz poller and the autoscaler loop against a real nats-server: a durable pull consumer with
// a backlog drives a bookkeeping WorkerPool 0 → ceil(N/threshold) (within the behavior's rate), and
// acking the backlog brings it back to 0 after cooldownPeriod.

const STREAM = 'AS_TEST';
const CONSUMER = 'work';
// 120/10 = 12 replicas, reached as 1 → 5 → 9 → 12 with +4 pods per period. (With 95 the HPA would
// stop at 9: 95/(10×9) = 1.06 is within the 0.1 tolerance.)
const N = 120;

// Written as a user would: kustomize-style multi-doc file, numbers in metadata quoted, a cluster
// monitoring endpoint that the test overrides with the local one.
const SCALED_OBJECT_YAML = `
apiVersion: v1
kind: ConfigMap
metadata: { name: unrelated }
data: { a: "1" }
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: work
spec:
  scaleTargetRef: { name: work }
  pollingInterval: 30
  cooldownPeriod: 300
  maxReplicaCount: 20
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp:
          stabilizationWindowSeconds: 0
          policies: [{ type: Pods, value: 4, periodSeconds: 1 }]
        scaleDown:
          stabilizationWindowSeconds: 0
          policies: [{ type: Percent, value: 100, periodSeconds: 1 }]
  triggers:
    - type: nats-jetstream
      metadata:
        natsServerMonitoringEndpoint: nats-headless.nats.svc.cluster.local:8222
        account: $G
        stream: ${STREAM}
        consumer: ${CONSUMER}
        lagThreshold: "10"
        activationLagThreshold: "0"
`;

class FakePool implements WorkerPool {
  n = 0;
  history = [0];
  replicas() {
    return this.n;
  }
  async scaleTo(n: number) {
    this.n = n;
    this.history.push(n);
  }
}

let nats: NatsServer;
let nc: NatsConnection;
let dir: string;

beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: STREAM, subjects: ['as.test'] });
  await jsm.consumers.add(STREAM, { durable_name: CONSUMER, ack_policy: AckPolicy.Explicit });
  dir = mkdtempSync(join(tmpdir(), 'keda-'));
  mkdirSync(join(dir, 'work'));
  mkdirSync(join(dir, 'overlays', 'edge'), { recursive: true });
  writeFileSync(join(dir, 'work', 'scaledobject.yaml'), SCALED_OBJECT_YAML);
  // Overlays patch the same objects; a second `work` here would be a duplicate if it were read.
  writeFileSync(join(dir, 'overlays', 'edge', 'patch.yaml'), SCALED_OBJECT_YAML);
});

afterAll(async () => {
  await nc?.close();
  await nats?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('jsz poller', () => {
  it('reads lag 0 for an empty consumer and errors on a missing one, like KEDA ≥ 2.20', async () => {
    const target = { monitoringEndpoint: nats.monitorEndpoint, account: '$G', stream: STREAM, consumer: CONSUMER, useHttps: false };
    expect(await readConsumerLag(target)).toEqual({ lag: 0, numPending: 0, numAckPending: 0 });
    await expect(readConsumerLag({ ...target, consumer: 'missing' })).rejects.toThrow(`consumer "missing" not found in stream "${STREAM}"`);
    await expect(readConsumerLag({ ...target, stream: 'NO_STREAM' })).rejects.toThrow('consumer "work" not found in stream "NO_STREAM"');
  });
});

describe('autoscaler loop', () => {
  it('follows the repository ScaledObjects when keda/ has them', () => {
    let configs;
    try {
      configs = loadScaledObjects(join(import.meta.dirname, '..', 'keda'));
    } catch (e) {
      if (String(e).includes('ENOENT')) return;
      throw e;
    }
    const want: Record<string, string[]> = {
      ingest: [`${STREAMS.uploads}/${CONSUMERS.ingest}`],
      collect: [`${STREAMS.telemetry}/${CONSUMERS.collect}`, `${STREAMS.rollups}/${CONSUMERS.rollups}`],
    };
    for (const c of configs) {
      expect(Object.keys(want)).toContain(c.target);
      // Names from shared/names.ts; that every one has its trigger is test/manifests.test.ts's check.
      for (const t of c.triggers) expect(want[c.target]).toContain(`${t.stream}/${t.consumer}`);
    }
  });

  // Timing-based (1 s policy periods, 0.2 s polls): one retry absorbs a starved poll on a loaded
  // 2-core machine; the arithmetic itself is covered deterministically in autoscaler.test.ts.
  it('scales 0 → ceil(N/threshold) on a backlog and back to 0 after the cooldown', { retry: 1 }, async () => {
    const js = nc.jetstream();
    for (let i = 0; i < N; i++) await js.publish('as.test', new TextEncoder().encode(`m${i}`));

    const pool = new FakePool();
    const decisions: AutoscaleDecision[] = [];
    const lines: string[] = [];
    const statusFile = join(dir, 'autoscaler-status.json');
    const cooldownS = 2;
    const autoscaler = startAutoscaler({
      kedaDir: dir,
      monitorEndpoint: nats.monitorEndpoint,
      overrides: { pollingInterval: 0.2, cooldownPeriod: cooldownS },
      pools: { work: pool },
      statusFile,
      onDecision: (d) => decisions.push(d),
      log: (l) => lines.push(l),
    });
    try {
      expect(autoscaler.configs.map((c) => c.name)).toEqual(['work']);
      await waitFor(async () => pool.n === 12, 'replicas 12', 15_000, 50);

      // 0 → 1 is KEDA's activation, then the HPA at most +4 pods per 1 s period up to ceil(N/10).
      expect(pool.history.slice(0, 3)).toEqual([0, 1, 5]);
      const steps = pool.history.slice(1).map((n, i) => n - pool.history[i]!);
      expect(Math.max(...steps.slice(1))).toBeLessThanOrEqual(4);
      expect(pool.history).toEqual([0, 1, 5, 9, 12]);
      expect(decisions.find((d) => d.to === 1)).toMatchObject({ from: 0, by: 'keda', kind: 'activate', lag: N });
      expect(decisions.find((d) => d.from === 1 && d.to === 5)?.reason).toBe('hpa: ceil(120/10)=12, limited to 5 by scaleUp policies (Max of Pods 4/1s)');
      expect(lines).toContain('[autoscale] work lag=120 replicas 1→5 (hpa: ceil(120/10)=12, limited to 5 by scaleUp policies (Max of Pods 4/1s))');

      // Fetched but unacked messages still count (num_ack_pending): the count must not drop.
      const consumer = await js.consumers.get(STREAM, CONSUMER);
      const msgs: JsMsg[] = [];
      for await (const m of await consumer.fetch({ max_messages: N, expires: 2000 })) {
        msgs.push(m);
        if (msgs.length === N) break;
      }
      expect(msgs).toHaveLength(N);
      const held = await readConsumerLag(autoscaler.configs[0]!.triggers[0]!);
      expect(held).toEqual({ lag: N, numPending: 0, numAckPending: N });
      await new Promise((r) => setTimeout(r, 500));
      expect(pool.n).toBe(12);

      await Promise.all(msgs.map((m) => m.ackAck()));
      await waitFor(async () => pool.n === 0, 'replicas 0', 15_000, 50);
      const lastActive = decisions.filter((d) => d.active).at(-1)!;
      const zero = decisions.find((d) => d.to === 0 && d.from > 0)!;
      expect(zero).toMatchObject({ by: 'keda', kind: 'deactivate', lag: 0 });
      // Scale to zero waited for the cooldown after the last poll that saw lag.
      expect(Date.parse(zero.at) - Date.parse(lastActive.at)).toBeGreaterThanOrEqual(cooldownS * 1000);
      // Meanwhile the HPA (scaleDown without stabilisation) went down to its minimum of 1.
      expect(pool.history.at(-2)).toBe(1);

      // The snapshot is written after each poll: wait for the one of the scale to zero.
      const read = () => JSON.parse(readFileSync(statusFile, 'utf8')) as StatusSnapshot;
      await waitFor(async () => read().scaledObjects[0]!.replicas === 0, 'status file at 0 replicas', 5000, 50);
      const snap = read();
      expect(snap.scaledObjects[0]).toMatchObject({ target: 'work', replicas: 0, lag: 0, active: false, triggers: [{ stream: STREAM, consumer: CONSUMER, lagThreshold: 10, lag: 0 }] });
      expect(snap.scaledObjects[0]!.lastScale).toMatchObject({ from: 1, to: 0, kind: 'deactivate' });
      expect(formatStatus(autoscaler.status())).toMatch(/^work\s+0\s+0\.\.20\s+0\s+10\s+no\s/m);
    } finally {
      await autoscaler.stop();
    }
  });
});
