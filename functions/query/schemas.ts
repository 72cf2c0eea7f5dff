import { z } from 'zod';
import { RFC3339_PATTERN, parseInstant } from '../../shared/sample-rules.ts';
import { decodeCursor, MAX_CURSOR_LENGTH, type CursorSigner, type DecodedCursor } from './cursor.ts';
import type { Limits } from './config.ts';

// One set of zod schemas: the handlers validate requests with them and openapi.ts turns the same
// objects (with their .meta() descriptions) into the OpenAPI document, so the two cannot drift.

// ---------------------------------------------------------------------------------------------
// Request parameters

// Time bounds follow the same rule as stored timestamps (shared/sample-rules.ts).
export { parseInstant };

export const timeParam = (round: 'up' | 'down', description: string, example: string) =>
  z
    .string()
    .transform((s, ctx) => {
      const ms = parseInstant(s, round);
      if (typeof ms === 'string') {
        ctx.addIssue({ code: 'custom', message: ms });
        return z.NEVER;
      }
      return ms;
    })
    .optional()
    .meta({ description, example, format: 'date-time', pattern: RFC3339_PATTERN });

const startTime = timeParam(
  'up',
  'Only samples at or after this instant (inclusive). RFC 3339; fractional seconds and UTC offsets are accepted.',
  '2025-07-18T20:42:34Z',
);
const endTime = timeParam(
  'down',
  'Only samples at or before this instant (inclusive). RFC 3339; fractional seconds and UTC offsets are accepted.',
  '2025-07-18T20:42:37Z',
);
export const metricParam = z
  .string()
  .min(1, 'must not be empty')
  .max(128, 'is longer than 128 characters')
  .optional()
  .meta({ description: 'Only samples of this metric (exact DCGM metric name).', example: 'DCGM_FI_DEV_GPU_UTIL' });

export const limitParam = (limits: Limits, what = 'samples') => {
  const message = `must be an integer from 1 to ${limits.maxLimit}`;
  return z
    .string()
    .regex(/^\+?[0-9]{1,10}$/, message)
    .transform(Number)
    .pipe(z.number().int().min(1, message).max(limits.maxLimit, message))
    .optional()
    .meta({
      description: `Page size: at most this many ${what} per response. Values above ${limits.maxLimit} are rejected.`,
      type: 'integer',
      minimum: 1,
      maximum: limits.maxLimit,
      default: limits.defaultLimit,
    });
};

/** Without a signer (the OpenAPI document) no cursor can be verified, so none is accepted. */
const cursorParam = (signer?: CursorSigner) => z
  .string()
  .max(MAX_CURSOR_LENGTH, 'is too long')
  .transform((s, ctx): DecodedCursor => {
    const decoded = signer ? decodeCursor(signer, s) : 'cannot be verified (no cursor key)';
    if (typeof decoded === 'string') {
      ctx.addIssue({ code: 'custom', message: decoded });
      return z.NEVER;
    }
    return decoded;
  })
  .optional()
  .meta({
    description:
      'Opaque page token: the `next_cursor` of the previous page. Must be used with the same uuid, start_time, end_time and metric.',
  });

export const gpuPathParams = z.object({
  uuid: z
    .string()
    .min(1, 'must not be empty')
    .max(128, 'is longer than 128 characters')
    .meta({ description: 'GPU UUID as reported by DCGM.', example: 'GPU-5fd4f087-86f3-7a43-b711-4771313afc50' }),
});

export const telemetryQuery = (limits: Limits, cursors?: CursorSigner) =>
  z.strictObject({
    start_time: startTime,
    end_time: endTime,
    metric: metricParam,
    limit: limitParam(limits),
    cursor: cursorParam(cursors),
  });
export type TelemetryQuery = z.output<ReturnType<typeof telemetryQuery>>;

export const summaryQuery = z.strictObject({ start_time: startTime, end_time: endTime, metric: metricParam });
export type SummaryQuery = z.output<typeof summaryQuery>;

/** Routes without parameters still reject unknown ones (a typo should not be silently ignored). */
export const noQuery = z.strictObject({});

// ---------------------------------------------------------------------------------------------
// Response bodies

export const timestamp = (description: string) =>
  z.string().meta({ description: `${description} (RFC 3339, UTC).`, format: 'date-time', example: '2025-07-18T20:42:34.000Z' });
export const count = (description: string) => z.number().int().min(0).meta({ description });

export const gpuSchema = z
  .object({
    uuid: z.string().meta({ description: 'GPU UUID (the identity of a GPU).' }),
    gpu_id: z.string().meta({ description: 'Host-local GPU index (repeats across hosts).' }),
    device: z.string().meta({ example: 'nvidia0' }),
    model_name: z.string().meta({ example: 'NVIDIA H100 80GB HBM3' }),
    hostname: z.string(),
    first_seen: timestamp('Earliest sample'),
    last_seen: timestamp('Latest sample'),
    samples: count('Stored samples of this GPU.'),
    metrics: z.array(z.string()).meta({ description: 'Metric names with samples, sorted.' }),
  })
  .meta({ id: 'Gpu' });

export const sampleSchema = z
  .object({
    timestamp: timestamp('Sample time'),
    metric_name: z.string(),
    value: z.number(),
    gpu_id: z.string(),
    device: z.string(),
    uuid: z.string(),
    model_name: z.string(),
    hostname: z.string(),
    container: z.string(),
    pod: z.string(),
    namespace: z.string(),
    labels_raw: z.string().meta({ description: 'Labels as exported by DCGM (`key="value",…`).' }),
    labels: z.record(z.string(), z.string()).meta({ description: 'labels_raw parsed into an object.' }),
  })
  .meta({ id: 'Sample' });

const nullableTime = z.string().nullable().meta({ format: 'date-time', description: 'Normalised to UTC; null when not given.' });

export const telemetrySchema = z
  .object({
    uuid: z.string(),
    filters: z.object({
      start_time: nullableTime,
      end_time: nullableTime,
      metric: z.string().nullable(),
      limit: z.number().int().meta({ description: 'Effective page size.' }),
    }),
    count: count('Samples in this page.'),
    data: z.array(sampleSchema).meta({ description: 'Ordered by timestamp, then metric_name (ascending).' }),
    next_cursor: z
      .string()
      .nullable()
      .meta({ description: 'Pass as `cursor` to get the next page; null on the last page.' }),
  })
  .meta({ id: 'Telemetry' });

export const metricSummarySchema = z
  .object({
    metric_name: z.string(),
    count: count('Samples in the window.'),
    min: z.number(),
    max: z.number(),
    avg: z.number(),
    first_timestamp: timestamp('Earliest sample in the window'),
    last_timestamp: timestamp('Latest sample in the window'),
    last_value: z.number().meta({ description: 'Value of the latest sample in the window.' }),
  })
  .meta({ id: 'MetricSummary' });

export const summarySchema = z
  .object({
    uuid: z.string(),
    filters: z.object({ start_time: nullableTime, end_time: nullableTime, metric: z.string().nullable() }),
    count: count('Number of metrics.'),
    metrics: z.array(metricSummarySchema).meta({ description: 'One entry per metric, ordered by name.' }),
  })
  .meta({ id: 'GpuSummary' });

export const metricStatSchema = z
  .object({
    metric_name: z.string(),
    samples: count('Stored samples of this metric.'),
    gpus: count('Distinct GPUs reporting it (HyperLogLog estimate, exact for small sets).'),
    min: z.number(),
    max: z.number(),
    avg: z.number(),
    first_seen: timestamp('Earliest sample'),
    last_seen: timestamp('Latest sample'),
  })
  .meta({ id: 'MetricStat' });

export const metricListSchema = z
  .object({ metrics: z.array(metricStatSchema).meta({ description: 'Ordered by metric_name.' }), count: count('Number of metrics.') })
  .meta({ id: 'MetricList' });

// The error envelope and probe bodies are the same for every HTTP function (shared/http.ts).
export { errorSchema, healthSchema } from '../../shared/api-schemas.ts';
