import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import AjvModule, { type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { parseAllDocuments } from 'yaml';

// Helpers for test/manifests.test.ts: YAML loading, a kustomize build (kubectl when present, else
// a small resolver for the features our kustomizations use), and CRD-schema validators.

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** CRD schemas live next to the repo (CI checks them out there too). */
export const schemasDir = join(repoRoot, '..', 'shared', 'schemas');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: Json;
}

export function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...listFiles(p));
    else out.push(p);
  }
  return out.sort();
}

/** All documents of a YAML file; throws on any parse error or warning. */
export function loadYaml(file: string): Json[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const out: Json[] = [];
  for (const d of docs) {
    const problems = [...d.errors, ...d.warnings];
    if (problems.length) throw new Error(`${relative(repoRoot, file)}: ${problems.map((p) => p.message).join('; ')}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

const KUSTOMIZATION_NAMES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'];

export function kustomizationFile(dir: string): string | undefined {
  return KUSTOMIZATION_NAMES.map((n) => join(dir, n)).find((p) => existsSync(p));
}

export function readKustomization(dir: string): Json {
  const file = kustomizationFile(dir);
  if (!file) throw new Error(`${relative(repoRoot, dir)} has no kustomization.yaml`);
  const [k] = loadYaml(file);
  return k;
}

/** Every directory holding a kustomization under `root`. */
export function kustomizationDirs(root: string): string[] {
  return listFiles(root)
    .filter((f) => KUSTOMIZATION_NAMES.some((n) => f.endsWith(`/${n}`)))
    .map((f) => dirname(f));
}

/** Files a kustomization (and the ones it includes) reads, with absolute paths. */
export function referencedFiles(dir: string, seen = new Set<string>()): Set<string> {
  const file = kustomizationFile(dir);
  if (!file || seen.has(file)) return seen;
  seen.add(file);
  const k = readKustomization(dir);
  for (const r of (k.resources ?? []) as string[]) {
    const p = resolve(dir, r);
    if (statSync(p).isDirectory()) referencedFiles(p, seen);
    else seen.add(p);
  }
  for (const p of (k.patches ?? []) as { path?: string }[]) if (p.path) seen.add(resolve(dir, p.path));
  for (const c of (k.components ?? []) as string[]) referencedFiles(resolve(dir, c), seen);
  return seen;
}

const CLUSTER_SCOPED = new Set(['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding', 'ClusterTriggerAuthentication', 'PriorityClass', 'StorageClass']);

export const groupOf = (o: K8sObject) => (o.apiVersion.includes('/') ? o.apiVersion.split('/')[0] : '');
export const idOf = (o: K8sObject) => `${groupOf(o)}/${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;

function pointer(path: string): string[] {
  return path
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function applyJson6902(target: Json, ops: Json[]): void {
  for (const op of ops) {
    const parts = pointer(op.path);
    const last = parts.pop()!;
    let parent = target;
    for (const p of parts) {
      if (parent[p] === undefined) throw new Error(`patch path ${op.path} not found`);
      parent = parent[p];
    }
    const key = Array.isArray(parent) ? (last === '-' ? parent.length : Number(last)) : last;
    switch (op.op) {
      case 'replace':
        if (parent[key] === undefined) throw new Error(`replace: ${op.path} not found`);
        parent[key] = op.value;
        break;
      case 'add':
        if (Array.isArray(parent)) parent.splice(key as number, 0, op.value);
        else parent[key] = op.value;
        break;
      case 'remove':
        if (Array.isArray(parent)) parent.splice(key as number, 1);
        else delete parent[key];
        break;
      default:
        throw new Error(`unsupported JSON patch op ${op.op}`);
    }
  }
}

function matchesTarget(o: K8sObject, t: Json): boolean {
  if (t.kind && t.kind !== o.kind) return false;
  if (t.name && t.name !== o.metadata.name) return false;
  if (t.group !== undefined && t.group !== groupOf(o)) return false;
  if (t.version && t.version !== o.apiVersion.split('/').pop()) return false;
  if (t.namespace && t.namespace !== o.metadata.namespace) return false;
  return true;
}

function setImages(node: Json, images: Json[]): void {
  if (Array.isArray(node)) return node.forEach((n) => setImages(n, images));
  if (!node || typeof node !== 'object') return;
  for (const [k, v] of Object.entries(node)) {
    if ((k === 'containers' || k === 'initContainers') && Array.isArray(v)) {
      for (const c of v as Json[]) {
        const [name, tag] = String(c.image).split(':');
        const img = images.find((i) => i.name === name);
        if (img) c.image = `${img.newName ?? name}${img.newTag ?? tag ? `:${img.newTag ?? tag}` : ''}`;
      }
    } else setImages(v, images);
  }
}

/**
 * A kustomize build for machines without kubectl: resources (files and directories), namespace,
 * inline JSON 6902 patches with a target, and images — the features this repo's kustomizations
 * use. Anything else throws, so a new feature cannot be silently ignored.
 */
export function kustomizeFallback(dir: string): K8sObject[] {
  const k = readKustomization(dir);
  const known = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'patches', 'images']);
  const unknown = Object.keys(k).filter((key) => !known.has(key));
  if (unknown.length) throw new Error(`fallback kustomize does not support ${unknown.join(', ')} (${relative(repoRoot, dir)})`);
  const objs: K8sObject[] = [];
  for (const r of (k.resources ?? []) as string[]) {
    const p = resolve(dir, r);
    objs.push(...(statSync(p).isDirectory() ? kustomizeFallback(p) : (loadYaml(p) as K8sObject[])));
  }
  if (k.namespace) for (const o of objs) if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = k.namespace;
  for (const patch of (k.patches ?? []) as Json[]) {
    if (!patch.patch || !patch.target) throw new Error('fallback kustomize supports inline JSON 6902 patches with a target only');
    const ops = loadYaml0(patch.patch);
    if (!Array.isArray(ops)) throw new Error('fallback kustomize supports JSON 6902 (list) patches only');
    const targets = objs.filter((o) => matchesTarget(o, patch.target));
    if (targets.length === 0) throw new Error(`patch target matches nothing: ${JSON.stringify(patch.target)}`);
    for (const t of targets) applyJson6902(t, ops);
  }
  if (k.images) setImages(objs, k.images);
  const ids = new Set<string>();
  for (const o of objs) {
    if (ids.has(idOf(o))) throw new Error(`duplicate resource ${idOf(o)} in ${relative(repoRoot, dir)}`);
    ids.add(idOf(o));
  }
  return objs;
}

function loadYaml0(text: string): Json {
  const [d] = parseAllDocuments(text);
  if (d.errors.length) throw new Error(d.errors.map((e) => e.message).join('; '));
  return d.toJS();
}

export function kubectlAvailable(): boolean {
  return spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;
}

export function kubectlKustomize(dir: string): K8sObject[] {
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`kubectl kustomize ${relative(repoRoot, dir)} failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS())
    .filter(Boolean) as K8sObject[];
}

/** kubectl kustomize when available (the real thing), else the fallback above. */
export function kustomize(dir: string, useKubectl = kubectlAvailable()): K8sObject[] {
  return useKubectl ? kubectlKustomize(dir) : kustomizeFallback(dir);
}

// ---------------------------------------------------------------------------------------------
// CRD schema validation

const K8S_KEYWORDS = [
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-int-or-string',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
  'x-kubernetes-validations',
  'x-kubernetes-embedded-resource',
];

/**
 * Copy of a structural schema where every object with `properties` (and no
 * x-kubernetes-preserve-unknown-fields) rejects unknown keys — what the API server's strict
 * field validation reports, so a misspelt field fails here instead of being pruned silently.
 */
export function tighten(schema: Json): Json {
  if (Array.isArray(schema)) return schema.map(tighten);
  if (!schema || typeof schema !== 'object') return schema;
  const out: Json = {};
  for (const [k, v] of Object.entries(schema)) {
    // `properties` maps names to schemas: tighten each value, never treat the map as a schema.
    if (k === 'properties') out[k] = Object.fromEntries(Object.entries(v as Json).map(([n, s]) => [n, tighten(s)]));
    else out[k] = tighten(v);
  }
  if (out.properties && !out['x-kubernetes-preserve-unknown-fields'] && out.additionalProperties === undefined) {
    out.additionalProperties = false;
  }
  return out;
}

// CommonJS packages under NodeNext: the class/plugin is the `default` property.
const Ajv = AjvModule.default;
const addFormats = addFormatsModule.default;
export type AjvInstance = InstanceType<typeof Ajv>;

export function newAjv(): AjvInstance {
  const ajv = new Ajv({ strictTypes: false, allErrors: true });
  addFormats(ajv);
  for (const keyword of K8S_KEYWORDS) ajv.addKeyword({ keyword });
  return ajv;
}

export interface CrdValidator {
  group: string;
  kind: string;
  version: string;
  validate: ValidateFunction;
}

export function crdValidators(files: string[], ajv = newAjv()): CrdValidator[] {
  const out: CrdValidator[] = [];
  for (const file of files) {
    for (const crd of loadYaml(file)) {
      for (const v of crd.spec.versions) {
        out.push({
          group: crd.spec.group,
          kind: crd.spec.names.kind,
          version: v.name,
          validate: ajv.compile(tighten(v.schema.openAPIV3Schema)),
        });
      }
    }
  }
  return out;
}

export function formatErrors(v: ValidateFunction): string {
  return (v.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`).join('\n');
}

// ---------------------------------------------------------------------------------------------
// Workloads

export interface Workload {
  object: K8sObject;
  podSpec: Json;
  /** Knative Service (Knative owns PORT, pod-level securityContext is feature-gated). */
  knative: boolean;
}

export function workloads(objs: K8sObject[]): Workload[] {
  return objs
    .filter((o) => ['Deployment', 'Job', 'StatefulSet', 'DaemonSet'].includes(o.kind) || (o.kind === 'Service' && groupOf(o) === 'serving.knative.dev'))
    .map((o) => ({ object: o, podSpec: o.spec.template.spec, knative: o.kind === 'Service' }));
}

/** `name=path` entry points of `npm run build` (esbuild). */
export function buildEntries(): Map<string, string> {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));
  const script: string = pkg.scripts.build;
  const entries = new Map<string, string>();
  for (const m of script.matchAll(/(?:^|\s)([\w-]+)=((?:functions|shared)\/[\w./-]+\.ts)/g)) entries.set(m[1], m[2]);
  return entries;
}

/** dist/<entry>.js a container runs (from command/args). */
export function entryOf(container: Json): string | undefined {
  const argv = [...(container.command ?? []), ...(container.args ?? [])].join(' ');
  return argv.match(/dist\/([\w-]+)\.js/)?.[1];
}
