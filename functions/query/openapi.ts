import { OpenAPIRegistry, OpenApiGeneratorV3 } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { QUERY_LIMIT_DEFAULTS, type Limits } from './config.ts';
import { anomaliesQuery, anomalyPageSchema, gpuPageSchema, gpusQuery, hostPageSchema, hostsQuery, metricPathParams, topQuery, topSchema } from './fleet-schemas.ts';
import {
  errorSchema,
  gpuPathParams,
  liveGpuQuery,
  liveMetricQuery,
  pipelineSchema,
  healthSchema,
  metricListSchema,
  noQuery,
  seriesQuery,
  seriesSchema,
  summaryQuery,
  summarySchema,
  telemetryQuery,
  telemetrySchema,
  uploadDuplicatesSchema,
  uploadPathParams,
} from './schemas.ts';

// The OpenAPI document, generated from the very schemas the handlers validate with.
// `npm run openapi` writes it (with the default limits) to functions/query/openapi.json; a test
// fails when that committed file differs from what this produces.

const json = (schema: Parameters<OpenAPIRegistry['register']>[1], description: string) => ({
  description,
  content: { 'application/json': { schema } },
});
const error = (description: string) => json(errorSchema, description);

export function buildOpenApi(limits: Limits = QUERY_LIMIT_DEFAULTS) {
  const registry = new OpenAPIRegistry();
  const bearer = registry.registerComponent('securitySchemes', 'bearerAuth', {
    type: 'http',
    scheme: 'bearer',
    description: 'Required when the server has API_TOKENS set; the token needs the `read` scope.',
  });
  const security = [{ [bearer.name]: [] }];
  const authErrors = {
    401: error('Missing or unknown bearer token.'),
    403: error('The token lacks the `read` scope.'),
  };
  const storeError = { 500: error('Internal error (details are logged, not returned).') };
  const badParam = (what: string) => error(`Invalid parameter (${what}); the message and details name it.`);
  const badGpuParam = (what: string) => error(`Invalid parameter (${what}); the message and details name it. Checked before the GPU is looked up, so it wins over 404.`);

  registry.registerPath({
    method: 'get',
    path: '/api/v1/gpus',
    operationId: 'listGpus',
    summary: 'GPUs with stored telemetry, paged and filtered',
    description:
      'Read from the GPU inventory maintained at insert time (no scan of samples); exact sample counts from rollup_1d. ' +
      'Pages of at most `limit` GPUs in uuid order; follow `next_cursor` until it is null. `flags` are the health flags of ' +
      'GET /api/v1/anomalies over the last FLAGS_WINDOW_S before the fleet\'s latest sample. Carries an ETag; ' +
      'If-None-Match with it answers 304.',
    security,
    request: { query: gpusQuery() },
    responses: {
      200: json(gpuPageSchema, 'One page of GPUs, ordered by uuid.'),
      304: { description: 'Not modified (If-None-Match matched the ETag).' },
      400: badParam('bad limit, cursor, time or filter, unknown parameter'),
      ...authErrors,
      ...storeError,
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/api/v1/hosts',
    operationId: 'listHosts',
    summary: 'Hosts with their GPU count, models and first/last seen, paged',
    description: 'Read from the GPU inventory. Ordered by hostname; carries an ETag (If-None-Match → 304).',
    security,
    request: { query: hostsQuery() },
    responses: {
      200: json(hostPageSchema, 'One page of hosts.'),
      304: { description: 'Not modified.' },
      400: badParam('bad limit or cursor, unknown parameter'),
      ...authErrors,
      ...storeError,
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/api/v1/metrics/{metric}/top',
    operationId: 'topGpus',
    summary: 'The GPUs with the highest (or lowest) value of a metric over a window',
    description:
      'Window [start_time, end_time): served from rollup_1h when both ends are whole hours, rollup_1m when whole minutes, ' +
      'raw samples (duplicates collapsed) otherwise; `source` says which. `last` is the value of the latest sample. ' +
      'Without a window: the hour (whole hours) up to the fleet\'s latest sample.',
    security,
    request: { params: metricPathParams, query: topQuery },
    responses: { 200: json(topSchema, 'Up to `limit` GPUs, best first.'), 400: badParam('bad window, by, order or limit'), ...authErrors, ...storeError },
  });

  registry.registerPath({
    method: 'get',
    path: '/api/v1/anomalies',
    operationId: 'listAnomalies',
    summary: 'Health anomalies (thermal, xid, idle_allocated, stale) in a window',
    description:
      'Computed in ClickHouse over rollup_1m (whole minutes overlapping [start_time, end_time)); thresholds from the environment ' +
      '(THERMAL_THRESHOLD_C, THERMAL_MIN_SHARE, IDLE_MEMORY_MIB, STALE_FACTOR). Without a window: the last FLAGS_WINDOW_S before ' +
      'the fleet\'s latest sample. One entry per GPU and kind, ordered by uuid then kind; paged by cursor.',
    security,
    request: { query: anomaliesQuery() },
    responses: {
      200: json(anomalyPageSchema, 'One page of anomalies.'),
      304: { description: 'Not modified.' },
      400: badParam('bad window, kind, limit or cursor'),
      ...authErrors,
      ...storeError,
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/api/v1/gpus/{uuid}/telemetry',
    operationId: 'gpuTelemetry',
    summary: "Samples of one GPU, oldest first",
    description:
      'Samples ordered by timestamp, then metric_name, optionally limited to an inclusive time window and one metric. ' +
      'Pages are at most `limit` samples; follow `next_cursor` until it is null.',
    security,
    request: { params: gpuPathParams, query: telemetryQuery(limits) },
    responses: {
      200: json(telemetrySchema, 'One page of samples (empty when the window holds none).'),
      400: badGpuParam('bad timestamp, start_time after end_time, bad limit or cursor, unknown parameter'),
      ...authErrors,
      404: error('No telemetry was ever stored for this GPU.'),
      ...storeError,
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/api/v1/gpus/{uuid}/summary',
    operationId: 'gpuSummary',
    summary: 'Per-metric aggregates of one GPU',
    description: 'count, min, max, avg, first/last timestamp and latest value of each metric in the optional inclusive window.',
    security,
    request: { params: gpuPathParams, query: summaryQuery },
    responses: {
      200: json(summarySchema, 'One entry per metric (empty when the window holds none).'),
      400: badGpuParam('bad timestamp, start_time after end_time, unknown parameter'),
      ...authErrors,
      404: error('No telemetry was ever stored for this GPU.'),
      ...storeError,
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/api/v1/gpus/{uuid}/series',
    operationId: 'gpuSeries',
    summary: 'Downsampled series of one GPU',
    description:
      'Per metric, epoch-aligned UTC buckets of `step` ({t, count, min, max, avg, last}) over the de-duplicated samples; ' +
      'buckets are whole (the first starts at start_time rounded down to the step). Served from the coarsest rollup ' +
      '(1 min, 1 h, 1 d) whose width divides the step, from raw samples otherwise; `source` says which. ' +
      'At most 10 metrics and 10,000 buckets per metric.',
    security,
    request: { params: gpuPathParams, query: seriesQuery },
    responses: {
      200: json(seriesSchema, 'One series per requested metric (points empty when the window holds none).'),
      400: badParam('bad metric, timestamp, step or max_points, start_time after end_time, too many buckets, unknown parameter'),
      ...authErrors,
      404: error('No telemetry was ever stored for this GPU.'),
      ...storeError,
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/api/v1/uploads/{id}/duplicates',
    operationId: 'uploadDuplicates',
    summary: 'How many rows of an upload were already stored',
    description:
      'Computed on demand from the stored samples: rows of the upload whose sample (uuid, metric_name, timestamp) was stored ' +
      'before them, and samples of it a later upload replaced (the later upload wins).',
    security,
    request: { params: uploadPathParams, query: noQuery },
    responses: {
      200: json(uploadDuplicatesSchema, 'Counts for the upload.'),
      400: badParam('bad upload id, unknown parameter'),
      ...authErrors,
      404: error('No row of this upload is stored.'),
      ...storeError,
    },
  });

  const eventStream = (description: string) => ({
    description,
    content: {
      'text/event-stream': {
        schema: z.string().meta({
          description:
            'Events: `hello` {id, resume_window_seconds}; `samples` {samples: [{uuid, hostname, metric_name, timestamp, value}]} with id ' +
            '`<process>-<seq>`; `reset` (cannot resume from Last-Event-ID: reload); `dropped` {dropped, dropped_total} (this client was too ' +
            'slow); `: heartbeat` comment lines.',
        }),
      },
    },
  });
  const liveErrors = { ...authErrors, 503: error('This replica serves LIVE_MAX_CLIENTS live connections already (Retry-After).') };
  registry.registerPath({
    method: 'get',
    path: '/api/v1/gpus/{uuid}/live',
    operationId: 'gpuLive',
    summary: 'Live samples of one GPU (Server-Sent Events)',
    description:
      'New samples of the GPU as collect stores them. Send `Last-Event-ID` to resume within LIVE_RESUME_WINDOW_MS on the same replica. ' +
      'A GPU not seen yet is accepted (its first samples will arrive).',
    security,
    request: { params: gpuPathParams, query: liveGpuQuery },
    responses: { 200: eventStream('An endless event stream.'), 400: badParam('bad metric list, unknown parameter'), ...liveErrors },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/v1/metrics/{metric}/live',
    operationId: 'metricLive',
    summary: 'Live samples of one metric across the fleet (Server-Sent Events)',
    security,
    request: { params: metricPathParams, query: liveMetricQuery },
    responses: { 200: eventStream('An endless event stream.'), 400: badParam('bad metric name, unknown parameter'), ...liveErrors },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/v1/pipeline',
    operationId: 'pipelineState',
    summary: 'Pipeline state for the console (lag, parts waiting, dead letters, rows stored per second, replicas)',
    security,
    responses: { 200: json(pipelineSchema, 'Current state.'), 400: badParam('unknown query parameter'), ...authErrors, ...storeError },
  });

  registry.registerPath({
    method: 'get',
    path: '/api/v1/metrics',
    operationId: 'listMetrics',
    summary: 'Every metric name with totals',
    description: 'Read from the metric statistics table maintained at insert time (no scan of samples).',
    security,
    responses: { 200: json(metricListSchema, 'All metrics, ordered by name.'), 400: badParam('unknown query parameter'), ...authErrors, ...storeError },
  });

  registry.registerPath({
    method: 'post',
    path: '/graphql',
    operationId: 'graphql',
    summary: 'GraphQL over the same reads (gpus, hosts, gpu { telemetry, series, summary, flags }, metrics, top, anomalies)',
    description:
      'GraphQL over HTTP (graphql-http). Arguments are validated by the same rules as the REST parameters (errors name the ' +
      'argument); same bearer scope (`read`). Queries nested deeper than 6 levels or whose lists could return more than ' +
      '50,000 values (each list multiplied by its `limit`) are refused with 400. GET with `?query=` works for queries too.',
    security,
    request: {
      body: {
        content: {
          'application/json': {
            schema: z.object({
              query: z.string().meta({ example: '{ gpus(limit: 2) { gpus { uuid flags } next_cursor } }' }),
              variables: z.record(z.string(), z.unknown()).optional(),
              operationName: z.string().optional(),
            }),
          },
        },
      },
    },
    responses: {
      200: { description: 'GraphQL result (`data`, `errors`).', content: { 'application/json': { schema: z.object({ data: z.unknown().optional(), errors: z.array(z.unknown()).optional() }) } } },
      400: { description: 'Malformed request, or over the depth or cost limit.', content: { 'application/json': { schema: z.object({ errors: z.array(z.unknown()) }) } } },
      ...authErrors,
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/openapi.json',
    operationId: 'openapi',
    summary: 'This document',
    security,
    responses: { 200: { description: 'OpenAPI 3 document.', content: { 'application/json': { schema: { type: 'object' } } } }, ...authErrors },
  });

  registry.registerPath({
    method: 'get',
    path: '/healthz',
    operationId: 'healthz',
    security: [],
    summary: 'Liveness (always 200 while the process runs)',
    responses: { 200: json(healthSchema, 'Alive.') },
  });
  registry.registerPath({
    method: 'get',
    path: '/readyz',
    operationId: 'readyz',
    security: [],
    summary: 'Readiness: ClickHouse and NATS reachable',
    responses: { 200: json(healthSchema, 'Ready.'), 503: json(healthSchema, 'A dependency is unreachable; `problems` says which.') },
  });
  registry.registerPath({
    method: 'get',
    path: '/metrics',
    operationId: 'prometheusMetrics',
    security: [],
    summary: 'Prometheus metrics',
    responses: { 200: { description: 'Prometheus text exposition format.', content: { 'text/plain': { schema: { type: 'string' } } } } },
  });

  return typedNullable(new OpenApiGeneratorV3(registry.definitions, { sortComponents: 'alphabetically' }).generateDocument({
    openapi: '3.0.3',
    servers: [{ url: '/', description: 'The query function (or a gateway in front of it).' }],
    info: {
      title: 'GPU telemetry query API',
      version: '1.0.0',
      description:
        'Read API over the telemetry stored in ClickHouse. Timestamps are RFC 3339 in UTC. Errors share one envelope: ' +
        '`{"error":{"code","message","details?"}}`. Unknown routes give 404, wrong methods 405.',
    },
  }));
}

/**
 * zod-to-openapi renders `z.unknown()` as `{ nullable: true }`, which OpenAPI 3.0 does not allow
 * without a `type` (linters report it). A schema without a type already admits any JSON value
 * but null; dropping the stray `nullable` keeps the document valid and the meaning closest.
 */
export function typedNullable<T>(doc: T): T {
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(visit);
    else if (node && typeof node === 'object') {
      const o = node as Record<string, unknown>;
      if (o.nullable === true && o.type === undefined && o.$ref === undefined && !o.allOf && !o.oneOf && !o.anyOf) delete o.nullable;
      Object.values(o).forEach(visit);
    }
  };
  visit(doc);
  return doc;
}

/** The document as committed: stable formatting with a trailing newline. */
export const openApiText = (limits?: Limits) => JSON.stringify(buildOpenApi(limits), null, 2) + '\n';
