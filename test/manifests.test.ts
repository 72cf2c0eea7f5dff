import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clickhouseEnv, natsEnv } from '../shared/config.ts';
import { registry } from '../shared/metrics.ts';
import { CONSUMERS, DEFAULT_NATS_ACCOUNT, STREAMS } from '../shared/names.ts';
import { heartbeatProblem } from '../shared/heartbeat.ts';
import { provisionEnv } from '../shared/provision.ts';
import { logEnv } from '../shared/log.ts';
import { describePeer, flowsFor, networkPolicySchema, selects } from './support/network-policies.ts';
import { connect } from 'nats';
import { sendRemoteWrite } from '../functions/remote-write/client.ts';
import { rowSeries } from './support/dcgm-series.ts';
import { fixtureRows } from './support/fixtures.ts';
import { freePort, waitFor } from './support/ports.ts';
import { startClickHouse, startNats, type NatsServer, type RunningServer } from './support/servers.ts';
import { functionNodeFlags, functionOfBundle } from './local/stack.ts';
import {
  buildEntries,
  crdValidators,
  entryOf,
  formatErrors,
  groupOf,
  idOf,
  kubectlAvailable,
  kubectlKustomize,
  kustomizationDirs,
  kustomize,
  kustomizeFallback,
  listFiles,
  loadYaml,
  newAjv,
  referencedFiles,
  repoRoot,
  schemasDir,
  workloads,
  type Json,
  type K8sObject,
} from './support/manifests.ts';

// Offline proof of the Kubernetes packaging: every manifest parses, builds with kustomize,
// validates against the KEDA/Knative CRD schemas (tightened to reject unknown fields), agrees with
// the code (names, env vars, metrics, build entries) and follows the security baseline; and the
// esbuild bundles the image ships start without node_modules.

const KEDA = join(repoRoot, 'keda');
const KNATIVE = join(repoRoot, 'knative');
const roots = [KEDA, KNATIVE];
const hasKubectl = kubectlAvailable();

const yamlFiles = roots.flatMap((r) => listFiles(r)).filter((f) => /\.ya?ml$/.test(f));
const kustomizeDirs = roots.flatMap((r) => kustomizationDirs(r));
/** Rendered output of every kustomization root (overlays included), built once. */
const builds = new Map<string, K8sObject[]>(kustomizeDirs.map((d) => [d, kustomize(d, hasKubectl)]));
const rel = (p: string) => relative(repoRoot, p);
const allRendered = () => [...builds.entries()].flatMap(([dir, objs]) => objs.map((o) => ({ dir: rel(dir), o })));
const ofKind = (kind: string, group?: string) => allRendered().filter(({ o }) => o.kind === kind && (group === undefined || groupOf(o) === group));
/** The single-cluster installs: what `kubectl apply -k keda` and `-k knative` create. */
const installed = (): K8sObject[] => {
  const byId = new Map<string, K8sObject>();
  for (const o of [...builds.get(KEDA)!, ...builds.get(KNATIVE)!]) byId.set(idOf(o), o);
  return [...byId.values()];
};

describe('manifests parse and build', () => {
  it('finds the kustomizations this repo ships', () => {
    const dirs = kustomizeDirs.map(rel);
    for (const d of ['keda', 'knative', 'keda/config', 'keda/overlays/edge', 'keda/overlays/central', 'keda/monitoring']) expect(dirs).toContain(d);
  });

  it.each(yamlFiles.map((f) => [rel(f), f]))('%s parses as YAML with apiVersion and kind', (_name, file) => {
    const docs = loadYaml(file);
    expect(docs.length).toBeGreaterThan(0);
    for (const d of docs) {
      expect(typeof d.apiVersion, 'apiVersion').toBe('string');
      expect(typeof d.kind, 'kind').toBe('string');
    }
  });

  it.each(kustomizeDirs.map((d) => [rel(d), d]))('%s builds', (_name, dir) => {
    const objs = builds.get(dir)!;
    expect(objs.length).toBeGreaterThan(0);
    const ids = objs.map(idOf);
    expect(new Set(ids).size, 'no duplicate objects').toBe(ids.length);
    // keda/nats-access holds rules for the NATS namespace; everything else lives in gputel.
    const namespace = rel(dir) === 'keda/nats-access' ? 'nats' : 'gputel';
    for (const o of objs) if (o.kind !== 'Namespace') expect(o.metadata.namespace, idOf(o)).toBe(namespace);
  });

  it.skipIf(!hasKubectl)('the offline kustomize fallback renders exactly what kubectl kustomize renders', () => {
    const canon = (objs: K8sObject[]) => objs.map((o) => JSON.stringify(sortKeys(o))).sort();
    for (const dir of kustomizeDirs) expect(canon(kustomizeFallback(dir)), rel(dir)).toEqual(canon(kubectlKustomize(dir)));
  });

  it('every file under knative/ and keda/ (except README.md) is used by some kustomization', () => {
    const used = new Set<string>();
    for (const d of kustomizeDirs) for (const f of referencedFiles(d)) used.add(f);
    const unused = roots
      .flatMap((r) => listFiles(r))
      .filter((f) => !f.endsWith('/README.md') && !used.has(f))
      .map(rel);
    expect(unused).toEqual([]);
  });

  it('keda/ and knative/ share identical Namespace/ConfigMap/Secret objects, so applying both never fights', () => {
    const shared = (objs: K8sObject[]) =>
      Object.fromEntries(objs.filter((o) => ['Namespace', 'ConfigMap', 'Secret'].includes(o.kind)).map((o) => [idOf(o), o]));
    const pairs = [
      ['keda', 'knative'],
      ['keda/overlays/edge', 'knative/overlays/edge'],
      ['keda/overlays/central', 'knative/overlays/central'],
    ];
    for (const [a, b] of pairs) {
      const sa = shared(builds.get(join(repoRoot, a))!);
      expect(Object.keys(sa).length, a).toBe(3);
      expect(shared(builds.get(join(repoRoot, b))!), `${a} vs ${b}`).toEqual(sa);
    }
  });

  it('the single-cluster installs contain the whole pipeline; the overlays split it edge/central', () => {
    const names = (dir: string, kind: string) => builds.get(join(repoRoot, dir))!.filter((o) => o.kind === kind).map((o) => o.metadata.name).sort();
    expect(names('keda', 'Deployment')).toEqual(['collect', 'ingest']);
    expect(names('keda', 'Job')).toEqual(['gputel-provision']);
    expect(names('keda', 'ScaledObject')).toEqual(['collect', 'ingest']);
    expect(names('knative', 'Service')).toEqual(['query', 'remote-write', 'upload']);
    expect(names('keda/overlays/edge', 'Deployment')).toEqual(['ingest']);
    expect(names('knative/overlays/edge', 'Service')).toEqual(['remote-write', 'upload']);
    expect(names('keda/overlays/central', 'Deployment')).toEqual(['collect']);
    expect(names('keda/overlays/central', 'Job')).toEqual(['gputel-provision']);
    expect(names('knative/overlays/central', 'Service')).toEqual(['query']);
    // Monitoring needs the Prometheus operator CRDs, so it is opt-in, not in the installs.
    expect(installed().some((o) => groupOf(o) === 'monitoring.coreos.com')).toBe(false);
  });
});

describe('CRD schema validation (tightened: unknown fields rejected)', () => {
  const validators = crdValidators([
    join(schemasDir, 'keda', 'keda.sh_scaledobjects.yaml'),
    join(schemasDir, 'keda', 'keda.sh_triggerauthentications.yaml'),
    join(schemasDir, 'keda', 'keda.sh_clustertriggerauthentications.yaml'),
    join(schemasDir, 'knative', 'serving.knative.dev_services.yaml'),
  ]);
  const validatorFor = (o: K8sObject) => validators.find((v) => v.group === groupOf(o) && v.kind === o.kind && o.apiVersion === `${v.group}/${v.version}`);
  const crdObjects = () => [
    ...allRendered().filter(({ o }) => ['keda.sh', 'serving.knative.dev'].includes(groupOf(o))),
    // the source files too, in case an overlay is what makes a rendered object valid
    ...yamlFiles.flatMap((f) => loadYaml(f).filter((o: K8sObject) => ['keda.sh', 'serving.knative.dev'].includes(groupOf(o))).map((o: K8sObject) => ({ dir: rel(f), o }))),
  ];

  it('validates every ScaledObject, TriggerAuthentication and Knative Service', () => {
    const objs = crdObjects();
    expect(objs.filter(({ o }) => o.kind === 'ScaledObject').length).toBeGreaterThanOrEqual(2);
    expect(objs.filter(({ o }) => o.kind === 'Service').length).toBeGreaterThanOrEqual(2);
    for (const { dir, o } of objs) {
      const v = validatorFor(o);
      expect(v, `no CRD schema for ${o.apiVersion} ${o.kind} (${dir})`).toBeDefined();
      expect(v!.validate(o), `${dir} ${idOf(o)}:\n${formatErrors(v!.validate)}`).toBe(true);
    }
  });

  it('the tightened schema really rejects typos and numeric trigger metadata (control)', () => {
    const so = ofKind('ScaledObject')[0].o;
    const v = validatorFor(so)!;
    const typo = structuredClone(so);
    typo.spec.pollingIntervall = 5;
    expect(v.validate(typo)).toBe(false);
    const numeric = structuredClone(so);
    numeric.spec.triggers[0].metadata.lagThreshold = 30;
    expect(v.validate(numeric)).toBe(false);
    const ksvc = ofKind('Service', 'serving.knative.dev')[0].o;
    const badKsvc = structuredClone(ksvc);
    badKsvc.spec.template.spec.containerConcurency = 4;
    expect(validatorFor(ksvc)!.validate(badKsvc)).toBe(false);
  });

  it('keeps minReplicaCount <= maxReplicaCount (the CEL rule ajv cannot evaluate) and Knative min-scale <= max-scale', () => {
    for (const { dir, o } of ofKind('ScaledObject')) {
      const min = o.spec.minReplicaCount ?? 0;
      const max = o.spec.maxReplicaCount ?? 100;
      expect(min, `${dir} ${o.metadata.name}`).toBeLessThanOrEqual(max);
      if (o.spec.idleReplicaCount !== undefined) expect(o.spec.idleReplicaCount).toBeLessThan(min);
    }
    for (const { dir, o } of ofKind('Service', 'serving.knative.dev')) {
      const a = o.spec.template.metadata.annotations ?? {};
      const min = Number(a['autoscaling.knative.dev/min-scale'] ?? 0);
      const max = Number(a['autoscaling.knative.dev/max-scale'] ?? Infinity);
      expect(min, `${dir} ${o.metadata.name}`).toBeLessThanOrEqual(max);
      expect(min, 'scale to zero').toBe(0);
      // annotation values must be strings (the API server rejects numbers in annotations)
      for (const [k, val] of Object.entries(a)) expect(typeof val, k).toBe('string');
      expect(o.spec.template.spec.containerConcurrency, 'deliberate containerConcurrency').toBeGreaterThan(0);
    }
  });
});

describe('KEDA scaling', () => {
  const scalers = JSON.parse(readFileSync(join(schemasDir, 'keda', 'scalers-schema.json'), 'utf8'));
  const natsParams: { name: string; optional?: boolean; default?: string }[] = scalers.scalers.find((s: Json) => s.type === 'nats-jetstream').parameters;
  // Per scale target, its triggers in order: collect drains two consumers (batches, rollup passes).
  const expected: Record<string, { stream: string; consumer: string }[]> = {
    ingest: [{ stream: STREAMS.uploads, consumer: CONSUMERS.ingest }],
    collect: [
      { stream: STREAMS.telemetry, consumer: CONSUMERS.collect },
      { stream: STREAMS.rollups, consumer: CONSUMERS.rollups },
    ],
  };

  it('nats-jetstream trigger metadata: known keys, string values, required keys present', () => {
    const known = new Set(natsParams.map((p) => p.name));
    const required = natsParams.filter((p) => !p.optional && p.default === undefined).map((p) => p.name);
    for (const { dir, o } of ofKind('ScaledObject')) {
      const triggers = o.spec.triggers as Json[];
      expect(triggers.length).toBeGreaterThan(0);
      for (const t of triggers) {
        // Scale on lag only: never CPU/memory (cannot reach zero; an idle fetch loop uses no CPU).
        expect(t.type, `${dir} ${o.metadata.name}`).toBe('nats-jetstream');
        expect(t.authenticationRef, 'nothing needs a TriggerAuthentication yet').toBeUndefined();
        for (const [k, v] of Object.entries(t.metadata)) {
          expect(known.has(k), `unknown metadata key ${k} in ${dir} ${o.metadata.name}`).toBe(true);
          expect(typeof v, `${k} must be a string`).toBe('string');
        }
        for (const k of required) expect(t.metadata[k], `${k} in ${dir} ${o.metadata.name}`).toBeDefined();
        expect(t.metadata.account ?? t.metadata.accountID, 'account or accountID').toBeDefined();
        expect(t.metadata.natsServerMonitoringEndpoint).toMatch(/^[a-z0-9.-]+:\d+$/);
        expect(Number(t.metadata.lagThreshold)).toBeGreaterThan(0);
        expect(Number(t.metadata.activationLagThreshold)).toBeGreaterThanOrEqual(0);
      }
    }
  });

  it('trigger stream/consumer/account are the names the code uses (shared/names.ts)', () => {
    const seen = new Set<string>();
    for (const { dir, o } of ofKind('ScaledObject')) {
      const want = expected[o.spec.scaleTargetRef.name];
      expect(want, `${dir}: ScaledObject for unknown target ${o.spec.scaleTargetRef.name}`).toBeDefined();
      const triggers = o.spec.triggers as Json[];
      expect(triggers.map((t) => ({ stream: t.metadata.stream, consumer: t.metadata.consumer })), dir).toEqual(want);
      for (const t of triggers) expect(t.metadata.account, dir).toBe(DEFAULT_NATS_ACCOUNT);
      // KEDA rejects a ScaledObject whose trigger names repeat.
      const names = triggers.map((t) => t.name).filter((n) => n !== undefined);
      expect(new Set(names).size, `${dir}: trigger names`).toBe(names.length);
      seen.add(o.spec.scaleTargetRef.name);
    }
    expect([...seen].sort()).toEqual(Object.keys(expected).sort());
  });

  it('every ScaledObject scales to zero, with fallback and an HPA behavior that is fast up and slow down', () => {
    for (const { dir, o } of ofKind('ScaledObject')) {
      const s = o.spec;
      const where = `${dir} ${o.metadata.name}`;
      expect(s.minReplicaCount, where).toBe(0);
      expect(s.maxReplicaCount, where).toBeGreaterThan(1);
      expect(s.pollingInterval, where).toBeGreaterThan(0);
      expect(s.cooldownPeriod, where).toBeGreaterThan(0);
      expect(s.fallback.failureThreshold, where).toBeGreaterThan(0);
      expect(s.fallback.replicas, where).toBeGreaterThan(0);
      const b = s.advanced.horizontalPodAutoscalerConfig.behavior;
      expect(b.scaleUp.stabilizationWindowSeconds, where).toBe(0);
      expect(b.scaleDown.stabilizationWindowSeconds, where).toBeGreaterThanOrEqual(60);
      expect(s.scaleTargetRef.kind ?? 'Deployment').toBe('Deployment');
    }
  });

  it('no HorizontalPodAutoscaler is shipped (KEDA creates the only one, from lag)', () => {
    expect(allRendered().filter(({ o }) => o.kind === 'HorizontalPodAutoscaler')).toEqual([]);
  });

  it('each worker Deployment is KEDA-owned: no replicas, a ScaledObject, a PDB, a grace period above the worst batch', () => {
    for (const [dir, objs] of builds) {
      for (const d of objs.filter((o) => o.kind === 'Deployment')) {
        const where = `${rel(dir)} ${d.metadata.name}`;
        expect(d.spec.replicas, `${where}: replicas would fight KEDA on every apply`).toBeUndefined();
        expect(objs.some((o) => o.kind === 'ScaledObject' && o.spec.scaleTargetRef.name === d.metadata.name), where).toBe(true);
        const labels = d.spec.template.metadata.labels;
        const pdb = objs.find((o) => o.kind === 'PodDisruptionBudget' && Object.entries(o.spec.selector.matchLabels).every(([k, v]) => labels[k] === v));
        expect(pdb, `${where}: PodDisruptionBudget`).toBeDefined();
        expect(pdb!.spec.minAvailable, 'minAvailable would block drains at 0 replicas').toBeUndefined();
        // The ClickHouse client times out a request after 120 s (shared/clickhouse.ts).
        expect(d.spec.template.spec.terminationGracePeriodSeconds, where).toBeGreaterThanOrEqual(120);
      }
    }
  });

  it('worker heartbeats fit the consumers\' ack_wait in every ConfigMap (a worker refuses to start otherwise)', () => {
    const cms = ofKind('ConfigMap').filter(({ o }) => o.metadata.name === 'gputel-config');
    expect(cms.length).toBeGreaterThan(0);
    for (const { dir, o } of cms) {
      const heartbeat = Number(o.data.WORKER_HEARTBEAT_MS);
      const ackWait = Number(o.data.CONSUMER_ACK_WAIT_MS);
      expect(heartbeatProblem(heartbeat, ackWait), dir).toBeUndefined();
      // Short enough that a killed pod's message comes back in seconds, not the old minute.
      expect(ackWait, dir).toBeLessThanOrEqual(15_000);
    }
  });

  it('max_ack_pending caps in the ConfigMap leave room for maxReplicaCount pods', () => {
    const cm = configMap(builds.get(KEDA)!);
    const so = (name: string) => builds.get(KEDA)!.find((o) => o.kind === 'ScaledObject' && o.metadata.name === name)!;
    // ingest holds one message per pod; collect COLLECT_MAX_MESSAGES per loop.
    expect(Number(cm.INGEST_MAX_ACK_PENDING)).toBeGreaterThanOrEqual(so('ingest').spec.maxReplicaCount);
    const perCollectPod = Number(cm.COLLECT_MAX_MESSAGES) * Number(cm.COLLECT_CONCURRENCY);
    expect(Number(cm.COLLECT_MAX_ACK_PENDING)).toBeGreaterThanOrEqual(so('collect').spec.maxReplicaCount * perCollectPod);
  });
});

describe('workload security and probes', () => {
  const all = () => [...builds.entries()].flatMap(([dir, objs]) => workloads(objs).map((w) => ({ dir: rel(dir), w })));

  it('every Deployment, Job and Knative Service runs non-root, read-only, without privileges', () => {
    expect(all().length).toBeGreaterThanOrEqual(5);
    for (const { dir, w } of all()) {
      const pod = w.podSpec;
      const where = `${dir} ${w.object.kind}/${w.object.metadata.name}`;
      if (w.knative) expect(pod.securityContext, `${where}: pod securityContext is feature-gated in Knative`).toBeUndefined();
      expect(pod.automountServiceAccountToken, where).toBe(false);
      expect(pod.hostNetwork ?? false).toBe(false);
      for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
        const sc = c.securityContext ?? {};
        const psc = pod.securityContext ?? {};
        expect(sc.runAsNonRoot ?? psc.runAsNonRoot, `${where} runAsNonRoot`).toBe(true);
        const uid = sc.runAsUser ?? psc.runAsUser;
        expect(uid, `${where} numeric non-root uid`).toBeGreaterThan(0);
        expect(sc.allowPrivilegeEscalation, `${where} allowPrivilegeEscalation`).toBe(false);
        expect(sc.readOnlyRootFilesystem, `${where} readOnlyRootFilesystem`).toBe(true);
        expect(sc.privileged ?? false).toBe(false);
        expect(sc.capabilities?.drop, `${where} drop ALL`).toContain('ALL');
        expect(sc.capabilities?.add ?? []).toEqual([]);
        expect((sc.seccompProfile ?? psc.seccompProfile)?.type, `${where} seccomp`).toBe('RuntimeDefault');
        expect(c.resources?.requests?.cpu, `${where} cpu request`).toBeDefined();
        expect(c.resources?.requests?.memory, `${where} memory request`).toBeDefined();
        expect(c.resources?.limits?.memory, `${where} memory limit`).toBeDefined();
      }
    }
  });

  it('servers and workers probe /readyz for readiness and /healthz for liveness; the Job has no probes', () => {
    for (const { dir, w } of all()) {
      const c = w.podSpec.containers[0];
      const where = `${dir} ${w.object.metadata.name}`;
      if (w.object.kind === 'Job') {
        expect(c.readinessProbe ?? c.livenessProbe).toBeUndefined();
        expect(w.podSpec.restartPolicy).toBe('OnFailure');
        continue;
      }
      expect(c.readinessProbe?.httpGet?.path, where).toBe('/readyz');
      expect(c.livenessProbe?.httpGet?.path, where).toBe('/healthz');
    }
  });

  it('containers run entries that `npm run build` produces', () => {
    const entries = buildEntries();
    const used = new Set<string>();
    for (const { dir, w } of all()) {
      const entry = entryOf(w.podSpec.containers[0]);
      expect(entry && entries.has(entry), `${dir} ${w.object.metadata.name}: ${entry}`).toBe(true);
      expect(w.podSpec.containers[0].image, 'one image, set through kustomize images').toMatch(/gputel/);
      used.add(entry!);
    }
    // every bundle is deployed somewhere
    expect([...used].sort()).toEqual([...entries.keys()].sort());
  });

  it('containers run node with the flags the local stack (and so every benchmark) runs the function with', () => {
    for (const { dir, w } of all()) {
      const c = w.podSpec.containers[0];
      const argv: string[] = [...(c.command ?? []), ...(c.args ?? [])];
      const bundle = `dist/${entryOf(c)}.js`;
      expect(argv[0], `${dir} ${w.object.metadata.name}`).toBe('node');
      const fn = functionOfBundle(bundle);
      expect(argv.slice(1, argv.indexOf(bundle)), `${dir} ${w.object.metadata.name}`).toEqual(fn ? functionNodeFlags(fn) : []);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Env vars: the manifests and the code's zod schemas must agree.

type ZodObjectLike = { shape: Record<string, unknown>; safeParse(v: unknown): { success: boolean; error?: { issues: unknown[] } } };
const isZodObject = (v: unknown): v is ZodObjectLike =>
  !!v && typeof v === 'object' && typeof (v as ZodObjectLike).shape === 'object' && typeof (v as ZodObjectLike).safeParse === 'function';

async function exportedSchemas(file: string): Promise<ZodObjectLike[]> {
  const mod = await import(pathToFileURL(join(repoRoot, file)).href);
  return Object.values(mod).filter(isZodObject);
}

/** The env schemas the process started from an entry reads. */
async function schemasOfEntry(entry: string): Promise<ZodObjectLike[]> {
  const path = buildEntries().get(entry)!;
  // provision-main reads provisionEnv + clickhouseEnv and connects with natsEnv.
  // Every process logs through shared/log.ts, which reads logEnv.
  if (path === 'shared/provision-main.ts') return [provisionEnv, clickhouseEnv, natsEnv, logEnv] as unknown as ZodObjectLike[];
  const config = join(dirname(path), 'config.ts');
  expect(existsSync(join(repoRoot, config)), `${config} (the function's env schema)`).toBe(true);
  return [...(await exportedSchemas(config)), logEnv as unknown as ZodObjectLike];
}

function configMap(objs: K8sObject[]): Record<string, string> {
  return objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'gputel-config')!.data;
}

function secretData(o: K8sObject): Record<string, string> {
  const out: Record<string, string> = { ...(o.stringData ?? {}) };
  for (const [k, v] of Object.entries((o.data ?? {}) as Record<string, string>)) out[k] = Buffer.from(v, 'base64').toString('utf8');
  return out;
}

/** The environment a container gets from envFrom + env (within one build). */
function containerEnv(objs: K8sObject[], container: Json): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef;
    const kind = from.configMapRef ? 'ConfigMap' : 'Secret';
    const src = objs.find((o) => o.kind === kind && o.metadata.name === ref.name);
    expect(src, `${kind} ${ref.name} referenced by envFrom is in the same install`).toBeDefined();
    Object.assign(env, kind === 'ConfigMap' ? src!.data : secretData(src!));
  }
  for (const e of container.env ?? []) env[e.name] = e.value ?? '';
  return env;
}

describe('env vars: manifests and code agree', () => {
  const codeKeys = new Set<string>();
  beforeAll(async () => {
    const modules = ['shared/config.ts', 'shared/provision.ts', 'shared/log.ts', ...readdirSync(join(repoRoot, 'functions')).map((f) => `functions/${f}/config.ts`)];
    for (const m of modules.filter((m) => existsSync(join(repoRoot, m)))) {
      for (const s of await exportedSchemas(m)) for (const k of Object.keys(s.shape)) codeKeys.add(k);
    }
  });

  it('finds the env schemas', () => {
    for (const k of ['NATS_URL', 'CLICKHOUSE_URL', 'WORKER_MAX_DELIVER', 'INGEST_MAX_ACK_PENDING']) expect(codeKeys).toContain(k);
  });

  it('every ConfigMap/Secret key and explicit env var is one the code reads', () => {
    for (const { dir, o } of [...ofKind('ConfigMap'), ...ofKind('Secret')]) {
      // Grafana dashboards are read by Grafana's sidecar, not by the functions (test/dashboards.test.ts).
      if (o.metadata.labels?.grafana_dashboard === '1') continue;
      const keys = Object.keys(o.kind === 'ConfigMap' ? o.data : secretData(o));
      expect(keys.filter((k) => !codeKeys.has(k)), `${dir} ${o.kind}/${o.metadata.name}: keys no code reads`).toEqual([]);
    }
  });

  it('each workload gets valid config for its entry: names it reads, values its schema accepts, required connections set', async () => {
    // Installable roots (those that carry the shared config); component folders are covered by them.
    const installs = [...builds].filter(([, objs]) => objs.some((o) => o.kind === 'ConfigMap') && workloads(objs).length > 0);
    expect(installs.length).toBeGreaterThanOrEqual(6);
    for (const [dir, objs] of installs) {
      for (const w of workloads(objs)) {
        const c = w.podSpec.containers[0];
        const entry = entryOf(c)!;
        const schemas = await schemasOfEntry(entry);
        const reads = new Set(schemas.flatMap((s) => Object.keys(s.shape)));
        const where = `${rel(dir)} ${w.object.metadata.name} (${entry})`;
        for (const e of c.env ?? []) expect(reads.has(e.name), `${where}: env ${e.name} is not read by ${entry}`).toBe(true);
        const env = containerEnv(objs, c);
        if (w.knative) {
          expect(env.PORT, `${where}: PORT is reserved, Knative sets it`).toBeUndefined();
          env.PORT = String(c.ports[0].containerPort);
        }
        // Connections that have defaults for local runs but must be configured in a cluster.
        // CURSOR_SECRET: without it every replica signs with its own random key.
        for (const k of ['NATS_URL', 'CLICKHOUSE_URL', 'CLICKHOUSE_USER', 'CLICKHOUSE_PASSWORD', 'API_TOKENS', 'CURSOR_SECRET']) {
          if (reads.has(k)) expect(env[k], `${where}: ${k} must be set`).toBeTruthy();
        }
        for (const s of schemas) {
          const r = s.safeParse(env);
          expect(r.success, `${where}: ${JSON.stringify(r.error?.issues)}`).toBe(true);
        }
        if (env.NATS_CREDS_FILE) {
          const mounts = (c.volumeMounts ?? []).map((m: Json) => m.mountPath);
          expect(mounts.some((m: string) => env.NATS_CREDS_FILE.startsWith(`${m}/`)), `${where}: NATS_CREDS_FILE is mounted`).toBe(true);
        }
        if (!w.knative && entry.endsWith('-worker')) {
          const port = Number(env.WORKER_HTTP_PORT ?? 8080);
          expect(c.ports.map((p: Json) => p.containerPort), `${where}: probes hit WORKER_HTTP_PORT`).toContain(port);
        }
      }
    }
  });
});

describe('HTTP servers: binding and timeouts', () => {
  const installs = () => [...builds].filter(([, objs]) => objs.some((o) => o.kind === 'ConfigMap') && workloads(objs).length > 0);

  it('every pod with an HTTP port binds all interfaces (HTTP_HOST 0.0.0.0; the code defaults to loopback)', () => {
    for (const [dir, objs] of installs()) {
      for (const w of workloads(objs).filter((x) => (x.podSpec.containers[0].ports ?? []).length > 0)) {
        expect(containerEnv(objs, w.podSpec.containers[0]).HTTP_HOST, `${rel(dir)} ${w.object.metadata.name}`).toBe('0.0.0.0');
      }
    }
  });

  it("Knative Services: Node's whole-request limit is at least timeoutSeconds (no 408 before the platform's limit), headers and idle limits below it", async () => {
    let checked = 0;
    for (const [dir, objs] of installs()) {
      for (const w of workloads(objs).filter((x) => x.knative)) {
        const c = w.podSpec.containers[0];
        const where = `${rel(dir)} ${w.object.metadata.name}`;
        const env = { ...containerEnv(objs, c), PORT: String(c.ports[0].containerPort) };
        const [schema] = (await schemasOfEntry(entryOf(c)!)).filter((s) => 'HTTP_REQUEST_TIMEOUT_MS' in s.shape);
        const cfg = (schema.safeParse(env) as unknown as { data: Record<string, number> }).data;
        const timeoutMs = w.podSpec.timeoutSeconds * 1000;
        expect(cfg.HTTP_REQUEST_TIMEOUT_MS, `${where}: HTTP_REQUEST_TIMEOUT_MS vs timeoutSeconds`).toBeGreaterThanOrEqual(timeoutMs);
        expect(cfg.HTTP_HEADERS_TIMEOUT_MS, where).toBeLessThan(timeoutMs);
        expect(cfg.HTTP_IDLE_TIMEOUT_MS, where).toBeLessThan(timeoutMs);
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(2);
  });
});

describe('monitoring', () => {
  const dir = join(KEDA, 'monitoring');
  const objs = () => builds.get(dir)!;

  it('alerts only on metrics the functions register, with their label names', async () => {
    const metrics = new Map((await registry.getMetricsAsJSON()).map((m) => [m.name, m]));
    const rule = objs().find((o) => o.kind === 'PrometheusRule')!;
    const exprs: string[] = rule.spec.groups.flatMap((g: Json) => g.rules.map((r: Json) => r.expr));
    const alerts: string[] = rule.spec.groups.flatMap((g: Json) => g.rules.map((r: Json) => r.alert));
    for (const a of ['GputelConsumerLagGrowing', 'GputelDeadLetters', 'GputelIngestRejectRateHigh', 'GputelQueryErrorRateHigh']) expect(alerts).toContain(a);
    let checked = 0;
    for (const expr of exprs) {
      for (const m of expr.matchAll(/(gputel_[a-z_]+?)(?:_count|_sum|_bucket)?\{([^}]*)\}/g)) {
        const def = metrics.get(m[1]) as Json;
        expect(def, `metric ${m[1]} is registered in shared/metrics.ts`).toBeDefined();
        const labels = [...m[2].matchAll(/([a-z_]+)\s*(?:=~|!=|!~|=)/g)].map((l) => l[1]);
        const known = new Set(['function', 'route', 'method', 'status', 'consumer', 'outcome', 'stage']);
        for (const l of labels) expect(known.has(l), `label ${l} of ${m[1]}`).toBe(true);
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(4);
    expect(exprs.join('\n')).toContain('stage="ingest", outcome="rejected"');
    expect(exprs.join('\n')).toMatch(/function="query", status=~"5\.\."/);
  });

  it('the PodMonitor selects every workload and scrapes ports the pods have', () => {
    const pm = objs().find((o) => o.kind === 'PodMonitor')!;
    const sel = pm.spec.selector.matchLabels as Record<string, string>;
    const ports = new Set(pm.spec.podMetricsEndpoints.map((e: Json) => e.port));
    for (const w of workloads(installed())) {
      const labels = w.object.spec.template.metadata.labels;
      expect(Object.entries(sel).every(([k, v]) => labels[k] === v), w.object.metadata.name).toBe(true);
      if (w.object.kind === 'Job') continue;
      // Knative renames the user container's port to "user-port".
      const names = w.knative ? ['user-port'] : w.podSpec.containers[0].ports.map((p: Json) => p.name);
      expect(names.some((n: string) => ports.has(n)), `${w.object.metadata.name} is scraped`).toBe(true);
    }
    for (const e of pm.spec.podMetricsEndpoints) expect(e.path).toBe('/metrics');
  });
});

// ---------------------------------------------------------------------------------------------
// Network policies: default deny, then exactly the flows of the architecture.

describe('network policies', () => {
  const validate = newAjv().compile(networkPolicySchema);
  const policies = (objs: K8sObject[]) => objs.filter((o) => o.kind === 'NetworkPolicy');
  const hostOf = (url: string) => new URL(url.split(',')[0]).hostname;
  const portOf = (url: string, def: number) => Number(new URL(url.split(',')[0]).port || def);
  /** `<svc>.<namespace>.svc...` → namespace */
  const namespaceOf = (host: string) => host.split('.')[1];
  /** Ports Knative's queue-proxy sidecar listens on in every Knative pod: requests, autoscaler metrics. */
  const QUEUE_PROXY_PORTS = [8012, 9090];
  const podLabels = (w: ReturnType<typeof workloads>[number]) => ({
    ...w.object.spec.template.metadata.labels,
    ...(w.knative ? { 'serving.knative.dev/service': w.object.metadata.name } : {}),
  });

  it('every NetworkPolicy is a valid networking.k8s.io/v1 object and opens nothing wholesale', () => {
    const all = [...ofKind('NetworkPolicy'), ...yamlFiles.flatMap((f) => loadYaml(f).filter((o: K8sObject) => o.kind === 'NetworkPolicy').map((o: K8sObject) => ({ dir: rel(f), o })))];
    expect(all.length).toBeGreaterThanOrEqual(8);
    for (const { dir, o } of all) {
      expect(validate(o), `${dir} ${o.metadata.name}:\n${formatErrors(validate)}`).toBe(true);
      expect(o.spec.policyTypes, `${dir} ${o.metadata.name}: explicit policyTypes`).toBeDefined();
      for (const dirn of ['ingress', 'egress'] as const) {
        for (const r of (o.spec[dirn] ?? []) as Json[]) {
          const peers = r[dirn === 'ingress' ? 'from' : 'to'];
          expect(peers?.length, `${dir} ${o.metadata.name}: a ${dirn} rule without peers allows every source`).toBeGreaterThan(0);
          expect(r.ports?.length, `${dir} ${o.metadata.name}: a ${dirn} rule without ports allows every port`).toBeGreaterThan(0);
          for (const p of peers) expect(p.ipBlock, `${dir} ${o.metadata.name}: no ipBlock`).toBeUndefined();
        }
      }
    }
    // Control: the strict schema rejects a typo.
    const typo = structuredClone(all[0].o);
    typo.spec.podSelectr = {};
    expect(validate(typo)).toBe(false);
  });

  it('every install with workloads denies all ingress and egress by default', () => {
    // Installable roots carry the shared config; component folders are covered by them.
    const installs = [...builds].filter(([, objs]) => objs.some((o) => o.kind === 'ConfigMap') && workloads(objs).length > 0);
    expect(installs.length).toBeGreaterThanOrEqual(6);
    for (const [dir, objs] of installs) {
      const deny = policies(objs).find((p) => Object.keys(p.spec.podSelector).length === 0);
      expect(deny, `${rel(dir)}: default deny`).toBeDefined();
      expect(deny!.spec.policyTypes.sort()).toEqual(['Egress', 'Ingress']);
      expect(deny!.spec.ingress ?? [], rel(dir)).toEqual([]);
      expect(deny!.spec.egress ?? [], rel(dir)).toEqual([]);
    }
  });

  it('podSelectors select real workloads of the same build (of the installs for config-only bases)', () => {
    for (const [dir, objs] of builds) {
      if (rel(dir) === 'keda/nats-access') continue;
      const pods = workloads(workloads(objs).length > 0 ? objs : installed()).map(podLabels);
      for (const np of policies(objs)) {
        if (Object.keys(np.spec.podSelector).length === 0) continue;
        expect(pods.some((l) => selects(np.spec.podSelector, l)), `${rel(dir)} ${np.metadata.name} selects no workload`).toBe(true);
      }
    }
  });

  it('keda/ and knative/ apply identical shared policies', () => {
    const shared = (dir: string) => Object.fromEntries(policies(builds.get(join(repoRoot, dir))!).filter((o) => o.metadata.name.startsWith('gputel-')).map((o) => [idOf(o), o]));
    expect(Object.keys(shared('keda')).length).toBe(3);
    expect(shared('knative')).toEqual(shared('keda'));
  });

  it('each workload is allowed exactly the flows of the architecture, on the ports of the URLs and containers', () => {
    const objs = installed();
    const cm = configMap(objs);
    const nats = `ns=${namespaceOf(hostOf(cm.NATS_URL))} pods=* TCP/${portOf(cm.NATS_URL, 4222)}`;
    const clickhouse = `ns=${namespaceOf(hostOf(cm.CLICKHOUSE_URL))} pods=* TCP/${portOf(cm.CLICKHOUSE_URL, 8123)}`;
    const dns = ['UDP', 'TCP'].map((p) => `ns=kube-system pods=k8s-app=kube-dns ${p}/53`);
    const metricsPort = Number(cm.WORKER_HTTP_PORT);
    const prometheus = (port: number) => `ns=monitoring pods=app.kubernetes.io/name=prometheus TCP/${port}`;
    const knative = [`ns=knative-serving|kourier-system pods=* TCP/${QUEUE_PROXY_PORTS[0]}`, `ns=knative-serving pods=app=autoscaler TCP/${QUEUE_PROXY_PORTS[1]}`];
    const expected: Record<string, { ingress: string[]; egress: string[] }> = {
      ingest: { ingress: [prometheus(metricsPort)], egress: [...dns, nats] },
      collect: { ingress: [prometheus(metricsPort)], egress: [...dns, nats, clickhouse] },
      'gputel-provision': { ingress: [], egress: [...dns, nats, clickhouse] },
      upload: { ingress: [...knative, prometheus(8080)], egress: [...dns, nats] },
      query: { ingress: [...knative, prometheus(8080)], egress: [...dns, nats, clickhouse] },
      'remote-write': { ingress: [...knative, prometheus(8080)], egress: [...dns, nats] },
    };
    const seen: string[] = [];
    for (const w of workloads(objs)) {
      const name = w.object.metadata.name;
      const flows = flowsFor(podLabels(w), policies(objs));
      expect(flows.isolated, `${name}: isolated both ways`).toEqual({ ingress: true, egress: true });
      expect({ ingress: flows.ingress, egress: flows.egress }, name).toEqual({ ingress: [...expected[name].ingress].sort(), egress: [...expected[name].egress].sort() });
      // Every port let in is one the pod listens on (Knative pods: user container + queue-proxy).
      const c = w.podSpec.containers[0];
      const listening = [...(c.ports ?? []).map((p: Json) => p.containerPort), ...(w.knative ? QUEUE_PROXY_PORTS : [])];
      for (const f of flows.ingress) expect(listening, `${name}: ${f}`).toContain(Number(f.split('/').pop()));
      seen.push(name);
    }
    expect(seen.sort()).toEqual(Object.keys(expected).sort());
    // Probes and metrics use the ports the Prometheus rule lets in.
    for (const w of workloads(objs).filter((w) => w.object.kind === 'Deployment')) {
      expect(w.podSpec.containers[0].ports.find((p: Json) => p.name === 'http').containerPort).toBe(metricsPort);
    }
  });

  it('the overlays let each workload reach the same services (edge: the leaf node in the NATS namespace)', () => {
    for (const dir of ['keda/overlays/edge', 'keda/overlays/central', 'knative/overlays/edge', 'knative/overlays/central']) {
      const objs = builds.get(join(repoRoot, dir))!;
      const cm = configMap(objs);
      const nats = `ns=${namespaceOf(hostOf(cm.NATS_URL))} pods=* TCP/${portOf(cm.NATS_URL, 4222)}`;
      for (const w of workloads(objs)) expect(flowsFor(podLabels(w), policies(objs)).egress, `${dir} ${w.object.metadata.name}`).toContain(nats);
    }
  });

  it('keda/nats-access lets the KEDA operator reach the monitoring port and gputel the client port, nothing else', () => {
    const objs = builds.get(join(KEDA, 'nats-access'))!;
    const cm = configMap(installed());
    const endpoints = new Set(ofKind('ScaledObject').flatMap(({ o }) => (o.spec.triggers as Json[]).map((t) => t.metadata.natsServerMonitoringEndpoint as string)));
    const local = [...endpoints].filter((e) => e.endsWith('.svc.cluster.local:8222') || /\.svc(\.cluster\.local)?:\d+$/.test(e));
    expect(local.length).toBeGreaterThan(0);
    for (const e of local) expect(namespaceOf(e.split(':')[0]), e).toBe(objs[0].metadata.namespace);
    expect(namespaceOf(hostOf(cm.NATS_URL))).toBe(objs[0].metadata.namespace);
    const natsPod = { 'app.kubernetes.io/name': 'nats' };
    const flows = flowsFor(natsPod, policies(objs));
    expect(flows.egress).toEqual([]);
    expect(flows.ingress).toEqual(
      [`ns=keda pods=app=keda-operator TCP/${local[0].split(':')[1]}`, `ns=gputel pods=app.kubernetes.io/part-of=gputel TCP/${portOf(cm.NATS_URL, 4222)}`].sort(),
    );
    // The peer description itself: a namespaceSelector by name, pods by label.
    expect(describePeer({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'x' } } }, 'own')).toBe('ns=x pods=*');
  });
});

describe('Dockerfile', () => {
  const text = readFileSync(join(repoRoot, 'Dockerfile'), 'utf8');
  const stages = text.split(/^FROM /m).slice(1);
  const runtime = stages[stages.length - 1];

  it('builds in one stage and ships only the bundles, as a numeric non-root user', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(stages[0]).toMatch(/npm ci/);
    expect(stages[0]).toMatch(/npm run build/);
    // The bundles must carry the dependency patches (patches/) that `npm ci` applies locally.
    expect(JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).scripts.postinstall).toBe('patch-package');
    expect(stages[0]).toMatch(/COPY patches /);
    expect(stages[0]).toMatch(/npm ci[^\n]*&& npx patch-package --error-on-fail/);
    expect(text).toMatch(/^ARG NODE_IMAGE=node:20-[\w-]*slim$/m);
    expect(runtime).toMatch(/^\$\{NODE_IMAGE\} AS runtime/);
    const copies = runtime.split('\n').filter((l) => /^\s*COPY /.test(l));
    expect(copies.length).toBeGreaterThan(0);
    for (const c of copies) expect(c).toMatch(/--from=\w+ \S*dist\S* /);
    expect(runtime).not.toMatch(/node_modules|npm (ci|install)|chdb/);
    const user = runtime.match(/^USER (\d+)(?::(\d+))?/m);
    expect(user, 'numeric USER so kubelet can check runAsNonRoot').not.toBeNull();
    expect(Number(user![1])).toBeGreaterThan(0);
    expect(runtime).toMatch(/ARG FUNCTION=/);
    expect(runtime).toMatch(/dist\/\$\{FUNCTION\}\.js/);
    expect(buildEntries().has(runtime.match(/ARG FUNCTION=([\w-]+)/)![1])).toBe(true);
  });

  it('.dockerignore keeps node_modules and local artefacts out of the build context', () => {
    const ignore = readFileSync(join(repoRoot, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const p of ['node_modules', 'dist', '.git']) expect(ignore).toContain(p);
  });
});

// ---------------------------------------------------------------------------------------------
// The bundles the image ships start standalone (no node_modules) and behave as the manifests
// assume: probes, dependency checks, provisioning before workers, drain on SIGTERM.

const entriesExist = [...buildEntries().values()].every((p) => existsSync(join(repoRoot, p)));

describe.skipIf(!entriesExist)('npm run build output starts without node_modules', () => {
  let app: string;
  const children: ChildProcess[] = [];
  let nats: NatsServer | undefined;
  let clickhouse: (RunningServer & { port: number }) | undefined;

  beforeAll(() => {
    // Outside the repo, so no node_modules above it; same script as `npm run build`, other outdir.
    app = mkdtempSync(join(tmpdir(), 'gputel-bundle-'));
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));
    // The outdir, and where the build copies zstd's WebAssembly beside the bundles.
    const script = String(pkg.scripts.build).replace('--outdir=dist', `--outdir=${join(app, 'dist')}`).replace(' dist/ &&', ` ${join(app, 'dist')}/ &&`);
    expect(script.split(app).length).toBe(3);
    const r = spawnSync('sh', ['-c', script], {
      cwd: repoRoot,
      encoding: 'utf8',
      env: { ...process.env, PATH: `${join(repoRoot, 'node_modules', '.bin')}:${process.env.PATH}` },
    });
    expect(r.status, r.stderr).toBe(0);
  }, 120_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await nats?.stop();
    await clickhouse?.stop();
    if (app) rmSync(app, { recursive: true, force: true });
  });

  function run(entry: string, env: Record<string, string>): ChildProcess & { output: () => string; exited: Promise<number | null> } {
    const child = spawn(process.execPath, [join('dist', `${entry}.js`)], {
      cwd: app,
      // Only what the manifests would give (plus PATH): no inherited config.
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    return Object.assign(child, { output: () => out, exited });
  }

  const status = async (port: number, path: string) => (await fetch(`http://127.0.0.1:${port}${path}`)).status;
  const closedPort = async () => `http://127.0.0.1:${await freePort()}`;

  it('bundles import nothing but Node built-ins', () => {
    for (const entry of buildEntries().keys()) {
      const code = readFileSync(join(app, 'dist', `${entry}.js`), 'utf8');
      // How esbuild emits a module it left external: a top-level import or __require("x").
      const specifiers = [...code.matchAll(/^import\b[^;]*?\bfrom\s*["']([^"']+)["']|\b__require\(["']([^"']+)["']\)/gm)].map((m) => m[1] ?? m[2]);
      expect(specifiers.length, 'finds the node: imports at least').toBeGreaterThan(0);
      const external = specifiers.filter((s) => !s.startsWith('node:') && !s.startsWith('.') && !isBuiltin(s));
      expect(external, entry).toEqual([]);
    }
    expect(existsSync(join(app, 'node_modules'))).toBe(false);
  });

  it('query: /healthz 200 and /readyz 503 while ClickHouse is unreachable; exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const p = run('query', { PORT: String(port), CLICKHOUSE_URL: await closedPort(), NATS_URL: 'nats://127.0.0.1:1' });
    await waitFor(async () => (await status(port, '/healthz')) === 200, `query /healthz\n${p.output()}`, 20_000);
    expect(await status(port, '/readyz')).toBe(503);
    expect(await status(port, '/metrics')).toBe(200);
    p.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  });

  it('upload: /healthz 200 and /readyz 503 while NATS is unreachable', async () => {
    const port = await freePort();
    const p = run('upload', { PORT: String(port), NATS_URL: `nats://127.0.0.1:${await freePort()}` });
    await waitFor(async () => (await status(port, '/healthz')) === 200, `upload /healthz\n${p.output()}`, 20_000);
    expect(await status(port, '/readyz')).toBe(503);
    p.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  });

  it('remote-write: /healthz 200 and /readyz 503 while NATS is unreachable; exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const p = run('remote-write', { PORT: String(port), NATS_URL: `nats://127.0.0.1:${await freePort()}` });
    await waitFor(async () => (await status(port, '/healthz')) === 200, `remote-write /healthz\n${p.output()}`, 20_000);
    expect(await status(port, '/readyz')).toBe(503);
    p.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  });

  it('a worker started before provisioning exits non-zero (kubelet restarts it); provision then workers serve and drain', async () => {
    [nats, clickhouse] = await Promise.all([startNats(), startClickHouse()]);
    const env = { NATS_URL: nats.url, CLICKHOUSE_URL: clickhouse.url, JETSTREAM_REPLICAS: '1' };

    const early = run('ingest-worker', { ...env, WORKER_HTTP_PORT: String(await freePort()) });
    expect(await early.exited, early.output()).not.toBe(0);

    for (let i = 0; i < 2; i++) {
      // twice: the Job may run again on every apply, so it must be idempotent
      const prov = run('provision', env);
      expect(await prov.exited, prov.output()).toBe(0);
    }

    // The consumers KEDA reads now exist in /jsz of account $G.
    const jsz = await (await fetch(`http://${nats.monitorEndpoint}/jsz?acc=${encodeURIComponent(DEFAULT_NATS_ACCOUNT)}&consumers=true`)).json();
    const consumers = jsz.account_details[0].stream_detail.flatMap((s: Json) => (s.consumer_detail ?? []).map((c: Json) => `${s.name}/${c.name}`));
    expect(consumers).toEqual(expect.arrayContaining([`${STREAMS.uploads}/${CONSUMERS.ingest}`, `${STREAMS.telemetry}/${CONSUMERS.collect}`, `${STREAMS.rollups}/${CONSUMERS.rollups}`]));

    for (const entry of ['ingest-worker', 'collect-worker']) {
      const port = await freePort();
      const w = run(entry, { ...env, WORKER_HTTP_PORT: String(port) });
      await waitFor(async () => (await status(port, '/readyz')) === 200, `${entry} /readyz\n${w.output()}`, 20_000);
      expect(await status(port, '/healthz')).toBe(200);
      w.kill('SIGTERM');
      expect(await w.exited, w.output()).toBe(0);
    }
  }, 120_000);

  it('remote-write (protobufjs, snappyjs and zstd WebAssembly bundled) stores a real request in the telemetry stream', async () => {
    expect(nats, 'provisioned by the previous test').toBeDefined();
    const port = await freePort();
    const p = run('remote-write', { PORT: String(port), NATS_URL: nats!.url });
    await waitFor(async () => (await status(port, '/readyz')) === 200, `remote-write /readyz\n${p.output()}`, 20_000);
    const res = await sendRemoteWrite(`http://127.0.0.1:${port}/api/v1/write`, rowSeries(fixtureRows().slice(0, 10)));
    expect(res.status, res.body).toBe(204);
    const nc = await connect({ servers: nats!.url });
    const info = await (await nc.jetstreamManager()).streams.info(STREAMS.telemetry);
    await nc.close();
    expect(info.state.messages).toBe(1);
    p.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  }, 60_000);
});

const isBuiltin = (s: string) => builtinModules.includes(s);

function sortKeys(v: Json): Json {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (!v || typeof v !== 'object') return v;
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
}

