import type { Json, K8sObject } from './manifests.ts';

// Offline evaluation of NetworkPolicies for test/manifests.test.ts: a strict schema of
// networking.k8s.io/v1 NetworkPolicy (core API types have no CRD schema to validate against; this
// transcribes the fields of NetworkPolicySpec from the Kubernetes API reference), label selector
// matching, and the flows a set of policies allows to and from one pod.

const labelSelector = {
  type: 'object',
  additionalProperties: false,
  properties: {
    matchLabels: { type: 'object', additionalProperties: { type: 'string' } },
    matchExpressions: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['key', 'operator'],
        properties: {
          key: { type: 'string' },
          operator: { enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] },
          values: { type: 'array', items: { type: 'string' } },
        },
      },
    },
  },
};

const peer = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    podSelector: labelSelector,
    namespaceSelector: labelSelector,
    ipBlock: {
      type: 'object',
      additionalProperties: false,
      required: ['cidr'],
      properties: { cidr: { type: 'string' }, except: { type: 'array', items: { type: 'string' } } },
    },
  },
};

const port = {
  type: 'object',
  additionalProperties: false,
  properties: {
    protocol: { enum: ['TCP', 'UDP', 'SCTP'] },
    port: { anyOf: [{ type: 'integer', minimum: 1, maximum: 65535 }, { type: 'string', pattern: '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$', maxLength: 15 }] },
    endPort: { type: 'integer', minimum: 1, maximum: 65535 },
  },
};

const rule = (peers: 'from' | 'to') => ({
  type: 'object',
  additionalProperties: false,
  properties: { [peers]: { type: 'array', items: peer }, ports: { type: 'array', items: port } },
});

export const networkPolicySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'networking.k8s.io/v1' },
    kind: { const: 'NetworkPolicy' },
    metadata: {
      type: 'object',
      required: ['name'],
      properties: {
        name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' },
        namespace: { type: 'string' },
        labels: { type: 'object', additionalProperties: { type: 'string' } },
        annotations: { type: 'object', additionalProperties: { type: 'string' } },
      },
    },
    spec: {
      type: 'object',
      additionalProperties: false,
      required: ['podSelector'],
      properties: {
        podSelector: labelSelector,
        policyTypes: { type: 'array', items: { enum: ['Ingress', 'Egress'] }, uniqueItems: true },
        ingress: { type: 'array', items: rule('from') },
        egress: { type: 'array', items: rule('to') },
      },
    },
  },
};

/** Kubernetes label selector semantics; an empty selector matches everything. */
export function selects(selector: Json | undefined, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries((selector?.matchLabels ?? {}) as Record<string, string>)) if (labels[k] !== v) return false;
  for (const e of (selector?.matchExpressions ?? []) as { key: string; operator: string; values?: string[] }[]) {
    const has = e.key in labels;
    const ok =
      e.operator === 'In' ? has && e.values!.includes(labels[e.key]) :
      e.operator === 'NotIn' ? !has || !e.values!.includes(labels[e.key]) :
      e.operator === 'Exists' ? has : !has;
    if (!ok) return false;
  }
  return true;
}

/** Namespaces a namespaceSelector names through kubernetes.io/metadata.name (or `*` for any other selector). */
function namespacesOf(selector: Json): string {
  const byName = selector.matchLabels?.['kubernetes.io/metadata.name'];
  if (byName && Object.keys(selector.matchLabels).length === 1 && !selector.matchExpressions) return byName;
  const expr = (selector.matchExpressions ?? []) as { key: string; operator: string; values?: string[] }[];
  if (!selector.matchLabels && expr.length === 1 && expr[0].key === 'kubernetes.io/metadata.name' && expr[0].operator === 'In') return [...expr[0].values!].sort().join('|');
  return '*';
}

/** A peer as text: `ns=<names> pods=<k=v,...>`; `*` where a selector leaves it open. */
export function describePeer(p: Json, ownNamespace: string): string {
  if (p.ipBlock) return `ip=${p.ipBlock.cidr}`;
  const ns = p.namespaceSelector ? namespacesOf(p.namespaceSelector) : ownNamespace;
  const labels = Object.entries((p.podSelector?.matchLabels ?? {}) as Record<string, string>).map(([k, v]) => `${k}=${v}`);
  const pods = p.podSelector === undefined || (labels.length === 0 && !p.podSelector.matchExpressions) ? '*' : labels.sort().join(',');
  return `ns=${ns} pods=${pods}`;
}

export interface Flows {
  ingress: string[];
  egress: string[];
  /** Whether some policy restricts each direction (no policy of a type = everything allowed). */
  isolated: { ingress: boolean; egress: boolean };
}

const typesOf = (np: K8sObject): string[] => np.spec.policyTypes ?? (np.spec.egress ? ['Ingress', 'Egress'] : ['Ingress']);

/** What the policies in a namespace allow for a pod with these labels: `<peer> <PROTO>/<port>`. */
export function flowsFor(labels: Record<string, string>, policies: K8sObject[]): Flows {
  const out: Flows = { ingress: [], egress: [], isolated: { ingress: false, egress: false } };
  for (const np of policies.filter((p) => selects(p.spec.podSelector, labels))) {
    for (const dir of ['ingress', 'egress'] as const) {
      if (!typesOf(np).includes(dir === 'ingress' ? 'Ingress' : 'Egress')) continue;
      out.isolated[dir] = true;
      for (const r of (np.spec[dir] ?? []) as Json[]) {
        const peers = (r[dir === 'ingress' ? 'from' : 'to'] ?? [{ namespaceSelector: {} }]) as Json[];
        const ports = (r.ports ?? [{ protocol: 'ANY', port: '*' }]) as Json[];
        for (const p of peers) for (const pt of ports) out[dir].push(`${describePeer(p, np.metadata.namespace ?? '')} ${pt.protocol ?? 'TCP'}/${pt.port ?? '*'}`);
      }
    }
  }
  for (const dir of ['ingress', 'egress'] as const) out[dir] = [...new Set(out[dir])].sort();
  return out;
}
