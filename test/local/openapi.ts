// `npm run openapi`: writes the OpenAPI documents generated from the zod schemas the handlers
// validate with (test/openapi.test.ts fails when a committed one is stale):
// - functions/query/openapi.json: the query function's own document (it serves it at /openapi.json);
// - docs/openapi.json: the one document of the whole product: upload, query and remote-write
//   routes. It lives here, not in a function, because a function never imports another one.
import { OpenAPIRegistry, OpenApiGeneratorV3 } from '@asteasolutions/zod-to-openapi';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { errorSchema } from '../../shared/api-schemas.ts';
import { buildOpenApi, openApiText, typedNullable } from '../../functions/query/openapi.ts';
import { REMOTE_WRITE_VERSION } from '../../functions/remote-write/body.ts';
import { WRITE_PATH } from '../../functions/remote-write/index.ts';
import { idempotencyKey, receiveQuery, statusQuery, uploadAcceptedSchema, uploadPathParams, uploadStatusSchema } from '../../functions/upload/schemas.ts';
import { repoRoot } from './stack.ts';

const error = (description: string) => ({ description, content: { 'application/json': { schema: errorSchema } } });

/** The upload and remote-write routes (the query ones come from the query function's document). */
function ingestRoutes() {
  const registry = new OpenAPIRegistry();
  const bearer = registry.registerComponent('securitySchemes', 'bearerAuth', {
    type: 'http',
    scheme: 'bearer',
    description: 'Required when the server has API_TOKENS set; each route names the scope it needs.',
  });
  const security = [{ [bearer.name]: [] }];
  const auth = (scope: string) => ({ 401: error('Missing or unknown bearer token.'), 403: error(`The token lacks the \`${scope}\` scope.`) });

  registry.registerPath({
    method: 'post',
    path: '/api/v1/uploads',
    operationId: 'uploadCsv',
    tags: ['upload'],
    summary: 'Upload a DCGM CSV file (upload function)',
    description:
      'The body is the CSV (text/csv, optionally Content-Encoding: gzip) or multipart/form-data with a `file` field. The file is ' +
      'stored, split into line-aligned parts and validated and stored asynchronously: follow `status_url`. Needs the `upload` scope.',
    security,
    request: {
      query: receiveQuery,
      headers: z.object({ 'Idempotency-Key': idempotencyKey.optional() }),
      body: {
        required: true,
        content: {
          'text/csv': { schema: z.string().meta({ description: 'DCGM CSV with its header line.' }) },
          'multipart/form-data': { schema: z.object({ file: z.string().meta({ format: 'binary' }) }) },
        },
      },
    },
    responses: {
      202: { description: 'Stored; processing continues asynchronously.', content: { 'application/json': { schema: uploadAcceptedSchema } } },
      400: error('Malformed body, header line or parameter; the message says which.'),
      ...auth('upload'),
      408: error('The body did not arrive in time.'),
      409: error('An upload with this Idempotency-Key is still being received.'),
      413: error('Larger than the configured limit.'),
      415: error('Unsupported media type, charset or encoding.'),
      422: error('The Idempotency-Key belongs to a different file.'),
      503: error('Storage is full or unavailable; retry (with the same Idempotency-Key).'),
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/api/v1/uploads/{id}',
    operationId: 'uploadStatus',
    tags: ['upload'],
    summary: 'Status of an upload (upload function)',
    description: 'Rows accepted, rejected (with the first reasons) and stored. Needs the `upload` or `read` scope.',
    security,
    request: { params: uploadPathParams, query: statusQuery },
    responses: {
      200: { description: 'The upload.', content: { 'application/json': { schema: uploadStatusSchema } } },
      400: error('Invalid id or parameter.'),
      ...auth('upload` or `read'),
      404: error('No upload with this id (or its status has expired).'),
    },
  });

  registry.registerPath({
    method: 'post',
    path: WRITE_PATH,
    operationId: 'remoteWrite',
    tags: ['remote-write'],
    summary: 'Prometheus remote write 1.0 receiver (remote-write function)',
    description:
      `A snappy-compressed protobuf prometheus.WriteRequest (X-Prometheus-Remote-Write-Version: ${REMOTE_WRITE_VERSION}). ` +
      'dcgm-exporter series become samples of the pipeline. Needs the `write` scope.',
    security,
    request: {
      body: { required: true, content: { 'application/x-protobuf': { schema: z.string().meta({ format: 'binary' }) } } },
    },
    responses: {
      204: { description: 'Accepted.' },
      400: error('Not a valid snappy/protobuf WriteRequest, or the version header is missing.'),
      ...auth('write'),
      413: error('Larger than the configured limit.'),
      415: error('Wrong Content-Type, Content-Encoding or protocol version.'),
      503: error('The pipeline is unavailable; Prometheus retries.'),
    },
  });
  return new OpenApiGeneratorV3(registry.definitions, { sortComponents: 'alphabetically' }).generateDocument({
    openapi: '3.0.3',
    info: { title: 'ingest routes', version: '1.0.0' },
  });
}

/** The whole product's document: the query document plus the upload and remote-write routes. */
export function productOpenApi() {
  const query = buildOpenApi();
  const ingest = ingestRoutes();
  const sorted = <T>(o: Record<string, T>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
  return typedNullable({
    ...query,
    info: {
      title: 'GPU telemetry API',
      version: query.info.version,
      description:
        'The whole product: uploads (upload function), Prometheus remote write (remote-write function) and reads, GraphQL ' +
        'included (query function). Each function serves its routes and /healthz, /readyz, /metrics. ' +
        query.info.description!.replace(/^Read API over the telemetry stored in ClickHouse\. /, ''),
    },
    servers: [{ url: '/', description: 'A gateway routing /api/v1/uploads to upload, /api/v1/write to remote-write and the rest to query.' }],
    paths: sorted({ ...query.paths, ...ingest.paths }),
    components: {
      ...query.components,
      schemas: sorted({ ...query.components?.schemas, ...ingest.components?.schemas }),
    },
  });
}

export const productOpenApiText = () => JSON.stringify(productOpenApi(), null, 2) + '\n';
export const PRODUCT_OPENAPI = join(repoRoot, 'docs', 'openapi.json');
export const QUERY_OPENAPI = join(repoRoot, 'functions', 'query', 'openapi.json');

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  mkdirSync(dirname(PRODUCT_OPENAPI), { recursive: true });
  writeFileSync(QUERY_OPENAPI, openApiText());
  writeFileSync(PRODUCT_OPENAPI, productOpenApiText());
  console.log(`wrote ${QUERY_OPENAPI}\nwrote ${PRODUCT_OPENAPI}`);
}
