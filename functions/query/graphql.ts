import { buildSchema, GraphQLError, Kind, parse, specifiedRules, validate, type DocumentNode, type FragmentDefinitionNode, type GraphQLSchema, type SelectionSetNode, type Source, type ValidationRule } from 'graphql/index.js';
import { createHandler } from 'graphql-http/lib/use/http';
import { HttpError, type Req, type Res, type Route } from '../../shared/http.ts';
import type { CursorSigner } from './cursor.ts';
import type { FleetService } from './fleet.ts';
import { anomaliesQuery, gpusQuery, hostsQuery, LIST_LIMITS, metricPathParams, TOP_LIMITS, topQuery } from './fleet-schemas.ts';
import { validateRequest } from './params.ts';
import { gpuPathParams, noQuery, seriesQuery, summaryQuery, telemetryQuery, type SeriesQuery, type SummaryQuery, type TelemetryQuery } from './schemas.ts';
import type { Limits } from './config.ts';

// graphql is imported by file: it has no `exports` map, so Node's ESM loader (which loads
// graphql-http) takes its CommonJS `main` while bundlers prefer `module`; two copies of graphql
// would refuse each other's schema ("from another module or realm").
// GraphQL at /graphql (POST JSON; GET for queries) over the very answers of the REST routes:
// arguments are turned into a query string and validated by the same zod schemas (the same
// messages, naming the argument), the same bearer scope (`read`) is required, and a query deeper
// than MAX_DEPTH or costlier than MAX_COST (each list field multiplies its selection by its
// `limit`) is refused with a 400 before anything runs. Server: graphql-http, the reference
// GraphQL-over-HTTP implementation (spec-compliant status codes and media types, no framework).

export const MAX_DEPTH = 6;
export const MAX_COST = 50_000;

/** The per-GPU and metric answers (plain objects), for REST and GraphQL alike. */
export interface Reads {
  telemetry(uuid: string, query: TelemetryQuery, signal?: AbortSignal): Promise<unknown>;
  summary(uuid: string, query: SummaryQuery, signal?: AbortSignal): Promise<{ metrics: unknown[] }>;
  metrics(signal?: AbortSignal): Promise<{ metrics: unknown[] }>;
  exists(uuid: string, signal?: AbortSignal): Promise<boolean>;
  series(uuid: string, query: SeriesQuery, signal?: AbortSignal): Promise<unknown>;
}

export const SDL = /* GraphQL */ `
"""Any JSON value (anomaly evidence, sample labels)."""
scalar JSON

type Query {
  "GPUs with stored telemetry, paged (same as GET /api/v1/gpus)."
  gpus(limit: Int, cursor: String, hostname: String, model_name: String, metric: String, seen_after: String, seen_before: String, uuid_prefix: String): GpuPage!
  "Hosts, paged (GET /api/v1/hosts)."
  hosts(limit: Int, cursor: String): HostPage!
  "One GPU; null when no telemetry was ever stored for it."
  gpu(uuid: String!): Gpu
  "Every metric with totals (GET /api/v1/metrics)."
  metrics: [MetricStat!]!
  "Top GPUs by a statistic of a metric (GET /api/v1/metrics/{metric}/top)."
  top(metric: String!, start_time: String, end_time: String, by: String, order: String, limit: Int): Top!
  "Health anomalies (GET /api/v1/anomalies)."
  anomalies(start_time: String, end_time: String, kind: String, hostname: String, limit: Int, cursor: String): AnomalyPage!
}

type GpuPage { gpus: [GpuListing!]!, count: Int!, next_cursor: String }
type GpuListing {
  uuid: String!, gpu_id: String!, device: String!, model_name: String!, hostname: String!
  first_seen: String!, last_seen: String!, samples: Float!, metrics: [String!]!, flags: [String!]!
}
type HostPage { hosts: [Host!]!, next_cursor: String }
type Host { hostname: String!, gpus: Int!, models: [String!]!, first_seen: String!, last_seen: String! }

type Gpu {
  uuid: String!
  telemetry(start_time: String, end_time: String, metric: String, limit: Int, cursor: String): TelemetryPage!
  summary(start_time: String, end_time: String, metric: String): [MetricSummary!]!
  "Bucketed series (GET /api/v1/gpus/{uuid}/series): from rollups when the step allows, raw samples otherwise."
  series(metric: [String!]!, start_time: String, end_time: String, step: String, max_points: Int): Series!
  "Anomalies of this GPU in the window (default: the last FLAGS_WINDOW_S of the fleet's data)."
  flags(start_time: String, end_time: String): [Anomaly!]!
}
type Series { uuid: String!, start_time: String!, end_time: String!, step: String!, step_seconds: Int!, source: String!, series: [MetricSeries!]! }
type MetricSeries { metric: String!, points: [SeriesPoint!]! }
type SeriesPoint { t: String!, count: Float!, min: Float!, max: Float!, avg: Float!, last: Float! }
type TelemetryPage { count: Int!, data: [Sample!]!, next_cursor: String }
type Sample {
  timestamp: String!, metric_name: String!, value: Float!, gpu_id: String!, device: String!, uuid: String!
  model_name: String!, hostname: String!, container: String!, pod: String!, namespace: String!, labels_raw: String!, labels: JSON!
}
type MetricSummary {
  metric_name: String!, count: Float!, min: Float!, max: Float!, avg: Float!
  first_timestamp: String!, last_timestamp: String!, last_value: Float!
}
type MetricStat { metric_name: String!, samples: Float!, gpus: Float!, min: Float!, max: Float!, avg: Float!, first_seen: String!, last_seen: String! }
type Top { metric: String!, by: String!, order: String!, start_time: String!, end_time: String!, source: String!, gpus: [TopGpu!]! }
type TopGpu { uuid: String!, hostname: String!, model_name: String!, value: Float!, count: Float! }
type AnomalyPage { start_time: String!, end_time: String!, anomalies: [Anomaly!]!, next_cursor: String }
type Anomaly { uuid: String!, hostname: String!, model_name: String!, kind: String!, detail: JSON!, first_seen: String!, last_seen: String! }
`;

const schema = buildSchema(SDL);

/** List fields and the page size their cost is multiplied by when no `limit` is given. */
const listDefaults = (limits: Limits): Record<string, number> => ({
  gpus: LIST_LIMITS.defaultLimit,
  hosts: LIST_LIMITS.defaultLimit,
  anomalies: LIST_LIMITS.defaultLimit,
  flags: LIST_LIMITS.defaultLimit,
  top: TOP_LIMITS.defaultLimit,
  telemetry: limits.defaultLimit,
  summary: 64,
  metrics: 64,
  // series { series { points } }: at most 10 metrics of at most 10,000 buckets.
  series: 1,
  points: 10_000,
});

/** Depth and cost of the operations of a document (fragments inlined), or why it is refused. */
export function checkLimits(doc: DocumentNode, limits: Limits): string | undefined {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of doc.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
  const lists = listDefaults(limits);
  let deepest = 0;
  const walk = (set: SelectionSetNode, depth: number, seen: Set<string>): number => {
    deepest = Math.max(deepest, depth);
    if (depth > MAX_DEPTH + 1) return Infinity;
    let cost = 0;
    for (const sel of set.selections) {
      if (sel.kind === Kind.FIELD) {
        if (!sel.selectionSet) continue;
        const limitArg = sel.arguments?.find((a) => a.name.value === 'limit');
        const size = limitArg?.value.kind === Kind.INT ? Number(limitArg.value.value) : limitArg ? LIST_LIMITS.maxLimit : (lists[sel.name.value] ?? 1);
        cost += 1 + size * walk(sel.selectionSet, depth + 1, seen);
      } else if (sel.kind === Kind.INLINE_FRAGMENT) {
        cost += walk(sel.selectionSet, depth, seen);
      } else {
        const f = fragments.get(sel.name.value);
        if (!f || seen.has(f.name.value)) continue; // unknown or cyclic: the spec rules report it
        cost += walk(f.selectionSet, depth, new Set([...seen, f.name.value]));
      }
    }
    return Math.max(cost, 1);
  };
  let total = 0;
  for (const d of doc.definitions) if (d.kind === Kind.OPERATION_DEFINITION) total += walk(d.selectionSet, 1, new Set());
  if (deepest > MAX_DEPTH) return `the query is nested ${deepest} levels deep; the limit is ${MAX_DEPTH}`;
  if (total > MAX_COST) return `the query may return about ${Math.round(total)} values; the limit is ${MAX_COST} (lower the limit arguments or select fewer lists)`;
  return undefined;
}

/** Documents kept parsed: the most recently used query texts, each at most this long. */
export const DOCUMENT_CACHE_ENTRIES = 256;
export const DOCUMENT_CACHE_MAX_CHARS = 16_384;

/**
 * Parsing and validating a query, once per query text: a dashboard sends the same few texts over
 * and over, and validation (every spec rule over the document) was the largest part of the query
 * process's time per GraphQL request after execution. A bounded LRU of parsed documents by text;
 * validation results and the depth/cost verdict hang off the (immutable, shared) document.
 */
export function documentCache(limits: Limits, entries = DOCUMENT_CACHE_ENTRIES) {
  const documents = new Map<string, DocumentNode>();
  const validated = new WeakMap<DocumentNode, { schema: GraphQLSchema; rules: readonly ValidationRule[]; errors: ReturnType<typeof validate> }>();
  const verdicts = new WeakMap<DocumentNode, { refused: string | undefined }>();
  return {
    parse(query: string | Source): DocumentNode {
      if (typeof query !== 'string') return parse(query);
      const hit = documents.get(query);
      if (hit) {
        documents.delete(query); // most recently used last
        documents.set(query, hit);
        return hit;
      }
      const doc = parse(query); // a syntax error throws, and is not kept
      if (query.length <= DOCUMENT_CACHE_MAX_CHARS) {
        documents.set(query, doc);
        if (documents.size > entries) documents.delete(documents.keys().next().value!);
      }
      return doc;
    },
    validate(schema: GraphQLSchema, doc: DocumentNode, rules: readonly ValidationRule[] = specifiedRules) {
      // Kept for the same schema and rules (graphql-http passes a new array of the same rules each time).
      const kept = validated.get(doc);
      if (kept && kept.schema === schema && kept.rules.length === rules.length && kept.rules.every((r, i) => r === rules[i])) return kept.errors;
      const errors = validate(schema, doc, rules);
      validated.set(doc, { schema, rules: [...rules], errors });
      return errors;
    },
    limits(doc: DocumentNode): string | undefined {
      let verdict = verdicts.get(doc);
      if (!verdict) verdicts.set(doc, (verdict = { refused: checkLimits(doc, limits) }));
      return verdict.refused;
    },
    get size() {
      return documents.size;
    },
  };
}

/** GraphQL arguments as the query string the REST schemas validate. */
function asUrl(args: Record<string, unknown>): URL {
  const url = new URL('http://graphql/');
  for (const [k, v] of Object.entries(args)) {
    for (const one of Array.isArray(v) ? v : [v]) if (one !== undefined && one !== null) url.searchParams.append(k, String(one));
  }
  return url;
}

function toGraphqlError(e: unknown): unknown {
  if (e instanceof HttpError) {
    return new GraphQLError(e.message, { extensions: { code: e.code, status: e.status, ...(e.details ? { details: e.details } : {}) } });
  }
  return e;
}

async function answer<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    throw toGraphqlError(e);
  }
}

export function graphqlRoutes(
  deps: { fleet: FleetService; reads: Reads; cursors: CursorSigner; limits: Limits },
  needRead: (req: Req) => void,
): Route[] {
  const { fleet, reads, cursors, limits } = deps;
  const schemas = {
    gpus: gpusQuery(cursors),
    hosts: hostsQuery(cursors),
    anomalies: anomaliesQuery(cursors),
    telemetry: telemetryQuery(limits, cursors),
  };
  const none = { schema: noQuery, values: {} };
  const rootValue = {
    gpus: (args: Record<string, unknown>) => answer(() => fleet.gpus(validateRequest(none, { schema: schemas.gpus, url: asUrl(args) }).query)),
    hosts: (args: Record<string, unknown>) => answer(() => fleet.hosts(validateRequest(none, { schema: schemas.hosts, url: asUrl(args) }).query)),
    metrics: () => answer(async () => (await reads.metrics()).metrics),
    top: ({ metric, ...args }: Record<string, unknown>) =>
      answer(() => {
        const v = validateRequest({ schema: metricPathParams, values: { metric: String(metric) } }, { schema: topQuery, url: asUrl(args) });
        return fleet.top(v.path.metric, v.query);
      }),
    anomalies: (args: Record<string, unknown>) =>
      answer(() => fleet.anomalies(validateRequest(none, { schema: schemas.anomalies, url: asUrl(args) }).query)),
    gpu: ({ uuid }: { uuid: string }) =>
      answer(async () => {
        const { path } = validateRequest({ schema: gpuPathParams, values: { uuid } }, { schema: noQuery, url: asUrl({}) });
        if (!(await reads.exists(path.uuid))) return null;
        return {
          uuid: path.uuid,
          telemetry: (args: Record<string, unknown>) =>
            answer(() => reads.telemetry(path.uuid, validateRequest(none, { schema: schemas.telemetry, url: asUrl(args) }).query)),
          summary: (args: Record<string, unknown>) =>
            answer(async () => (await reads.summary(path.uuid, validateRequest(none, { schema: summaryQuery, url: asUrl(args) }).query)).metrics),
          series: (args: Record<string, unknown>) =>
            answer(() => reads.series(path.uuid, validateRequest(none, { schema: seriesQuery, url: asUrl(args), repeatable: ['metric'] }).query)),
          flags: (args: Record<string, unknown>) =>
            answer(async () => {
              const q = validateRequest(none, { schema: schemas.anomalies, url: asUrl(args) }).query;
              return (await fleet.gpuFlags(path.uuid, q)).anomalies;
            }),
        };
      }),
  };

  const documents = documentCache(limits);
  const handler = createHandler({
    schema,
    rootValue,
    parse: documents.parse,
    validate: documents.validate,
    onSubscribe: (_req, params) => {
      let doc: DocumentNode;
      try {
        doc = documents.parse(params.query);
      } catch {
        return undefined; // graphql-http answers the syntax error
      }
      const refused = documents.limits(doc);
      if (!refused) return undefined;
      return [
        JSON.stringify({ errors: [{ message: refused, extensions: { code: 'query_too_expensive' } }] }),
        { status: 400, statusText: 'Bad Request', headers: { 'content-type': 'application/json; charset=utf-8' } },
      ];
    },
  });
  const serve = async (req: Req, res: Res) => {
    needRead(req);
    await handler(req, res);
  };
  return [
    { method: 'POST', path: '/graphql', handle: serve },
    { method: 'GET', path: '/graphql', handle: serve },
  ];
}
