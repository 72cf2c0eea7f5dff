import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';

// A KEDA ScaledObject parsed and validated into a typed config before anything acts on it (the
// KEDA scaler style). Defaults are KEDA's (scaledobject_types.go, nats_jetstream_scaler.go) and,
// for `advanced.horizontalPodAutoscalerConfig.behavior`, the HPA's documented default behaviour.

export type PolicyType = 'Pods' | 'Percent';
export type SelectPolicy = 'Max' | 'Min' | 'Disabled';

export interface ScalingPolicy {
  type: PolicyType;
  value: number;
  periodSeconds: number;
}

export interface ScalingRules {
  stabilizationWindowSeconds: number;
  selectPolicy: SelectPolicy;
  policies: ScalingPolicy[];
  /** HPA tolerance for this direction (k8s ≥ 1.33 `behavior.*.tolerance`); 0.1 by default. */
  tolerance: number;
}

export interface Behavior {
  scaleUp: ScalingRules;
  scaleDown: ScalingRules;
}

export type FallbackBehavior = 'static' | 'currentReplicas' | 'currentReplicasIfHigher' | 'currentReplicasIfLower' | 'scalingModifiers';

export interface NatsJetStreamTrigger {
  /** `triggers[].name`; KEDA requires it unique within the ScaledObject. */
  name?: string;
  /** `host:port` of the NATS monitoring port (no scheme). */
  monitoringEndpoint: string;
  account: string;
  accountID?: string;
  stream: string;
  consumer: string;
  lagThreshold: number;
  activationLagThreshold: number;
  useHttps: boolean;
  metricType: 'AverageValue' | 'Value';
}

export interface ScaledObjectConfig {
  name: string;
  namespace?: string;
  /** `scaleTargetRef.name`: the Deployment, locally the worker function of the same name. */
  target: string;
  /** Seconds (fractional only through test overrides). */
  pollingInterval: number;
  cooldownPeriod: number;
  initialCooldownPeriod: number;
  minReplicaCount: number;
  maxReplicaCount: number;
  idleReplicaCount?: number;
  fallback?: { failureThreshold: number; replicas: number; behavior: FallbackBehavior };
  behavior: Behavior;
  /** In manifest order. KEDA: active if any is; the HPA: the highest replica count any asks for. */
  triggers: NatsJetStreamTrigger[];
}

export const DEFAULTS = {
  pollingInterval: 30,
  cooldownPeriod: 300,
  initialCooldownPeriod: 0,
  minReplicaCount: 0,
  maxReplicaCount: 100,
  lagThreshold: '10',
  activationLagThreshold: '0',
  tolerance: 0.1,
} as const;

/** HPA defaults (k8s `pkg/apis/autoscaling/v2/defaults.go`, HPA docs "Default Behavior"). */
export function defaultBehavior(): Behavior {
  return {
    scaleUp: {
      stabilizationWindowSeconds: 0,
      selectPolicy: 'Max',
      policies: [
        { type: 'Pods', value: 4, periodSeconds: 15 },
        { type: 'Percent', value: 100, periodSeconds: 15 },
      ],
      tolerance: DEFAULTS.tolerance,
    },
    scaleDown: {
      stabilizationWindowSeconds: 300,
      selectPolicy: 'Max',
      policies: [{ type: 'Percent', value: 100, periodSeconds: 15 }],
      tolerance: DEFAULTS.tolerance,
    },
  };
}

// Kubernetes quantity for tolerance: "0.05", "50m" or a plain number.
const quantity = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const m = typeof v === 'number' ? null : /^([0-9.]+)(m?)$/.exec(v.trim());
  const n = typeof v === 'number' ? v : m ? Number(m[1]) / (m[2] ? 1000 : 1) : NaN;
  if (!Number.isFinite(n) || n < 0) {
    ctx.addIssue({ code: 'custom', message: `not a quantity: ${String(v)}` });
    return z.NEVER;
  }
  return n;
});

const policySchema = z.object({
  type: z.enum(['Pods', 'Percent']),
  value: z.number().int().positive(),
  periodSeconds: z.number().int().min(1).max(1800),
});

const rulesSchema = z
  .object({
    stabilizationWindowSeconds: z.number().int().min(0).max(3600).optional(),
    selectPolicy: z.enum(['Max', 'Min', 'Disabled']).optional(),
    policies: z.array(policySchema).optional(),
    tolerance: quantity.optional(),
  })
  .optional();
type RulesInput = z.infer<typeof rulesSchema>;

const behaviorSchema = z.object({ scaleUp: rulesSchema, scaleDown: rulesSchema }).optional();
export type BehaviorInput = z.infer<typeof behaviorSchema>;

/** Integer carried as a string, as every trigger metadata value is (CRD: additionalProperties string). */
const intString = (field: string, def: string, min: number) =>
  z
    .string({ error: `${field} must be a string (quote it in YAML)` })
    .default(def)
    .refine((s) => /^-?\d+$/.test(s.trim()), `${field} must be an integer string`)
    .transform((s) => Number(s.trim()))
    .refine((n) => n >= min, `${field} must be ≥ ${min}`);

const natsMetadataSchema = z.object({
  natsServerMonitoringEndpoint: z.string().min(1).optional(),
  account: z.string().min(1).optional(),
  accountID: z.string().min(1).optional(),
  stream: z.string({ error: 'stream is required' }).min(1),
  consumer: z.string({ error: 'consumer is required' }).min(1),
  lagThreshold: intString('lagThreshold', DEFAULTS.lagThreshold, 1),
  activationLagThreshold: intString('activationLagThreshold', DEFAULTS.activationLagThreshold, 0),
  useHttps: z.enum(['true', 'false']).default('false'),
});

const triggerSchema = z.looseObject({
  type: z.string(),
  name: z.string().optional(),
  metricType: z.enum(['AverageValue', 'Value']).default('AverageValue'),
  metadata: z.record(z.string(), z.unknown()).default({}),
});

const scaledObjectSchema = z.looseObject({
  apiVersion: z.string().startsWith('keda.sh/'),
  kind: z.literal('ScaledObject'),
  metadata: z.looseObject({ name: z.string().min(1), namespace: z.string().optional() }),
  spec: z.looseObject({
    scaleTargetRef: z.looseObject({ name: z.string().min(1), kind: z.string().optional() }),
    pollingInterval: z.number().int().min(1).default(DEFAULTS.pollingInterval),
    cooldownPeriod: z.number().int().min(0).default(DEFAULTS.cooldownPeriod),
    initialCooldownPeriod: z.number().int().min(0).default(DEFAULTS.initialCooldownPeriod),
    minReplicaCount: z.number().int().min(0).default(DEFAULTS.minReplicaCount),
    maxReplicaCount: z.number().int().min(1).default(DEFAULTS.maxReplicaCount),
    idleReplicaCount: z.number().int().min(0).optional(),
    fallback: z
      .object({
        failureThreshold: z.number().int().min(0),
        replicas: z.number().int().min(0),
        behavior: z
          .enum(['static', 'currentReplicas', 'currentReplicasIfHigher', 'currentReplicasIfLower', 'scalingModifiers'])
          .default('static'),
      })
      .optional(),
    advanced: z
      .looseObject({
        horizontalPodAutoscalerConfig: z.looseObject({ behavior: behaviorSchema }).optional(),
      })
      .optional(),
    triggers: z.array(triggerSchema).min(1),
  }),
});

/** Local replacements: the monitoring endpoint of the local nats-server, and timings for tests. */
export interface ScaledObjectOverrides {
  monitorEndpoint?: string;
  account?: string;
  pollingInterval?: number;
  cooldownPeriod?: number;
  initialCooldownPeriod?: number;
  minReplicaCount?: number;
  maxReplicaCount?: number;
  /** Merged over the ScaledObject's behavior the same way the HPA merges it over its defaults. */
  behavior?: BehaviorInput;
}

function mergeRules(base: ScalingRules, from: RulesInput): ScalingRules {
  // k8s copyHPAScalingRules: every field given replaces the default, the rest stay.
  if (!from) return base;
  return {
    stabilizationWindowSeconds: from.stabilizationWindowSeconds ?? base.stabilizationWindowSeconds,
    selectPolicy: from.selectPolicy ?? base.selectPolicy,
    policies: from.policies ?? base.policies,
    tolerance: from.tolerance ?? base.tolerance,
  };
}

export function resolveBehavior(...layers: BehaviorInput[]): Behavior {
  let b = defaultBehavior();
  for (const layer of layers) {
    if (!layer) continue;
    b = { scaleUp: mergeRules(b.scaleUp, layer.scaleUp), scaleDown: mergeRules(b.scaleDown, layer.scaleDown) };
  }
  return b;
}

export class ScaledObjectError extends Error {}

function issues(e: z.ZodError, prefix: string): string {
  return e.issues.map((i) => `${[prefix, ...i.path].join('.')}: ${i.message}`).join('; ');
}

/** Validate one ScaledObject document and resolve every default. Throws ScaledObjectError. */
export function parseScaledObject(doc: unknown, overrides: ScaledObjectOverrides = {}): ScaledObjectConfig {
  const parsed = scaledObjectSchema.safeParse(doc);
  const label = (doc as { metadata?: { name?: string } })?.metadata?.name ?? '<unnamed>';
  if (!parsed.success) throw new ScaledObjectError(`ScaledObject ${label}: ${issues(parsed.error, 'spec')}`);
  const { metadata, spec } = parsed.data;

  // Every trigger counts in KEDA (any active, highest count wins): one the local autoscaler
  // cannot read would make it scale differently, so refuse it rather than ignore it.
  const other = spec.triggers.find((t) => t.type !== 'nats-jetstream');
  if (other) throw new ScaledObjectError(`ScaledObject ${label}: the local autoscaler reads only nats-jetstream triggers, found ${other.type}`);
  const names = spec.triggers.map((t) => t.name).filter((n) => n !== undefined);
  const repeated = names.find((n, i) => names.indexOf(n) !== i);
  if (repeated !== undefined) throw new ScaledObjectError(`ScaledObject ${label}: trigger name ${repeated} is used twice`);
  const triggers = spec.triggers.map((trig, i): NatsJetStreamTrigger => {
    const meta = natsMetadataSchema.safeParse(trig.metadata);
    if (!meta.success) throw new ScaledObjectError(`ScaledObject ${label}: ${issues(meta.error, `triggers[${i}].metadata`)}`);
    const m = meta.data;
    const monitoringEndpoint = overrides.monitorEndpoint ?? m.natsServerMonitoringEndpoint;
    if (!monitoringEndpoint) {
      throw new ScaledObjectError(`ScaledObject ${label}: natsServerMonitoringEndpoint is not in triggers[${i}].metadata; pass monitorEndpoint`);
    }
    const account = overrides.account ?? m.account ?? m.accountID;
    if (!account) throw new ScaledObjectError(`ScaledObject ${label}: triggers[${i}]: one of account/accountID is required`);
    return {
      name: trig.name,
      monitoringEndpoint,
      account,
      accountID: overrides.account ? undefined : m.accountID,
      stream: m.stream,
      consumer: m.consumer,
      lagThreshold: m.lagThreshold,
      activationLagThreshold: m.activationLagThreshold,
      useHttps: m.useHttps === 'true',
      metricType: trig.metricType,
    };
  });

  const cfg: ScaledObjectConfig = {
    name: metadata.name,
    namespace: metadata.namespace,
    target: spec.scaleTargetRef.name,
    pollingInterval: overrides.pollingInterval ?? spec.pollingInterval,
    cooldownPeriod: overrides.cooldownPeriod ?? spec.cooldownPeriod,
    initialCooldownPeriod: overrides.initialCooldownPeriod ?? spec.initialCooldownPeriod,
    minReplicaCount: overrides.minReplicaCount ?? spec.minReplicaCount,
    maxReplicaCount: overrides.maxReplicaCount ?? spec.maxReplicaCount,
    idleReplicaCount: spec.idleReplicaCount,
    fallback: spec.fallback,
    behavior: resolveBehavior(spec.advanced?.horizontalPodAutoscalerConfig?.behavior, overrides.behavior),
    triggers,
  };
  // The CRD's CEL rules.
  if (cfg.minReplicaCount > cfg.maxReplicaCount) {
    throw new ScaledObjectError(`ScaledObject ${label}: minReplicaCount ${cfg.minReplicaCount} > maxReplicaCount ${cfg.maxReplicaCount}`);
  }
  if (cfg.idleReplicaCount !== undefined && cfg.idleReplicaCount >= cfg.minReplicaCount) {
    throw new ScaledObjectError(`ScaledObject ${label}: idleReplicaCount must be lower than minReplicaCount`);
  }
  if (!(cfg.pollingInterval > 0)) throw new ScaledObjectError(`ScaledObject ${label}: pollingInterval must be > 0`);
  return cfg;
}

/** Every `kind: ScaledObject` document of a multi-document YAML text. */
export function scaledObjectDocuments(yamlText: string, source = '<yaml>'): unknown[] {
  const out: unknown[] = [];
  for (const doc of parseAllDocuments(yamlText)) {
    if (doc.errors.length) throw new ScaledObjectError(`${source}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as { kind?: unknown } | null;
    if (value && typeof value === 'object' && value.kind === 'ScaledObject') out.push(value);
  }
  return out;
}

/** YAML files under dir (recursively), skipping kustomize `overlays/` (they patch the same objects). */
export function yamlFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) {
      if (entry !== 'overlays' && !entry.startsWith('.')) files.push(...yamlFiles(path));
    } else if (/\.ya?ml$/.test(entry)) {
      files.push(path);
    }
  }
  return files;
}

/** Parse every ScaledObject found under a keda/ directory. */
export function loadScaledObjects(dir: string, overrides: ScaledObjectOverrides = {}): ScaledObjectConfig[] {
  const configs: ScaledObjectConfig[] = [];
  for (const file of yamlFiles(dir)) {
    for (const doc of scaledObjectDocuments(readFileSync(file, 'utf8'), file)) configs.push(parseScaledObject(doc, overrides));
  }
  const names = new Set<string>();
  for (const c of configs) {
    if (names.has(c.name)) throw new ScaledObjectError(`ScaledObject ${c.name} is defined twice under ${dir}`);
    names.add(c.name);
  }
  return configs;
}
