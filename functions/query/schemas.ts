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

const metricName = z
  .string()
  .min(1, 'must not be empty')
  .max(128, 'is longer than 128 characters')
  .regex(/^[A-Za-z_:][A-Za-z0-9_:]*$/, 'is not a metric name');

export const liveGpuQuery = z.strictObject({
  metric: z
    .string()
    .max(4096, 'is too long')
    .transform((s, ctx) => {
      const names = s.split(',').map((x) => x.trim()).filter(Boolean);
      const bad = names.find((n) => !metricName.safeParse(n).success);
      if (bad !== undefined || names.length === 0 || names.length > 64) {
        ctx.addIssue({ code: 'custom', message: 'must be 1 to 64 comma-separated metric names' });
        return z.NEVER;
      }
      return names;
    })
    .optional()
    .meta({ description: 'Only these metrics (comma-separated); all metrics when absent.', example: 'DCGM_FI_DEV_GPU_UTIL,DCGM_FI_DEV_GPU_TEMP' }),
});
export const liveMetricQuery = z.strictObject({});

const lagSchema = z.object({
  stream: z.string(),
  consumer: z.string(),
  pending: z.number().int().meta({ description: 'Messages not yet delivered (what KEDA scales on).' }),
  ack_pending: z.number().int().meta({ description: 'Delivered, not yet acknowledged.' }),
  redelivered: z.number().int(),
  waiting_pulls: z.number().int(),
});
export const pipelineSchema = z
  .object({
    at: z.string().meta({ format: 'date-time' }),
    consumers: z.array(lagSchema),
    parts_waiting: z.number().int().meta({ description: 'Uploaded file parts not yet ingested.' }),
    dead_letters: z.object({ messages: z.number().int(), bytes: z.number().int() }),
    rows_stored_per_second: z.number().meta({ description: 'From collect announcements seen by this replica.' }),
    rows_window_seconds: z.number(),
    live_clients: z.number().int(),
    autoscaler: z
      .object({
        updated_at: z.string(),
        functions: z.array(z.object({ function: z.string(), replicas: z.number().int(), lag: z.number().nullable(), min: z.number().int(), max: z.number().int() })),
      })
      .nullable()
      .meta({ description: 'Replicas per function while the local autoscaler runs (AUTOSCALER_STATUS_FILE); null otherwise.' }),
  })
  .meta({ id: 'PipelineState' });

export const uploadPathParams = z.object({
  id: z
    .string()
    .regex(/^[\w-]{1,128}$/, 'must be an upload id (letters, digits, _ and -, at most 128)')
    .meta({ description: 'Upload id, as returned by POST /api/v1/uploads.', example: '0198a3e2-4b1c-7d2e-9f10-1a2b3c4d5e6f' }),
});

// Series: bounded so one answer stays small whatever the window (≤ 10 metrics × 10,000 buckets).
export const SERIES_LIMITS = { maxMetrics: 10, maxBuckets: 10_000, defaultMaxPoints: 1000, minStepSeconds: 1, maxStepSeconds: 3650 * 86_400 } as const;
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `30s`, `1m`, `5m`, `1h`, `1d` or plain seconds → seconds; a message when it is not one. */
export function parseStep(text: string): number | string {
  const m = /^([0-9]{1,10})([smhd]?)$/.exec(text);
  const seconds = m ? Number(m[1]) * UNIT_SECONDS[m[2] || 's'] : NaN;
  if (!(seconds >= SERIES_LIMITS.minStepSeconds && seconds <= SERIES_LIMITS.maxStepSeconds)) {
    return `must be a duration like 30s, 1m, 5m, 1h or 1d (or whole seconds), from 1s to ${SERIES_LIMITS.maxStepSeconds / 86_400}d`;
  }
  return seconds;
}

export const seriesQuery = z.strictObject({
  metric: z
    .array(z.string().min(1, 'must not be empty').max(128, 'is longer than 128 characters'))
    .min(1, 'is required (repeat it for several metrics)')
    .max(SERIES_LIMITS.maxMetrics, `may be given at most ${SERIES_LIMITS.maxMetrics} times`)
    .meta({ description: `Metric name; repeat for up to ${SERIES_LIMITS.maxMetrics} metrics.`, example: ['DCGM_FI_DEV_GPU_UTIL'] }),
  start_time: timeParam('up', 'Window start (inclusive). Default: end_time − 24 h. Rounded down to the step: buckets are whole.', '2025-07-18T00:00:00Z'),
  end_time: timeParam("down", "Window end (inclusive). Default: the GPU's last sample (so historical imports chart).", '2025-07-18T23:59:59Z'),
  step: z
    .string()
    .transform((s, ctx) => {
      const seconds = parseStep(s);
      if (typeof seconds === 'string') {
        ctx.addIssue({ code: 'custom', message: seconds });
        return z.NEVER;
      }
      return seconds;
    })
    .optional()
    .meta({ description: 'Bucket width (`30s`, `1m`, `5m`, `1h`, `1d`, or whole seconds); buckets are epoch-aligned in UTC. Not with max_points.', example: '1m' }),
  max_points: z
    .string()
    .regex(/^\+?[0-9]{1,10}$/, `must be an integer from 1 to ${SERIES_LIMITS.maxBuckets}`)
    .transform(Number)
    .pipe(z.number().int().min(1, `must be an integer from 1 to ${SERIES_LIMITS.maxBuckets}`).max(SERIES_LIMITS.maxBuckets, `must be an integer from 1 to ${SERIES_LIMITS.maxBuckets}`))
    .optional()
    .meta({
      description: 'Without step: the smallest step of the ladder 1s, 2s, 5s, 10s, 15s, 30s, 1m, 2m, 5m, 10m, 15m, 30m, 1h, 2h, 3h, 6h, 12h, 1d (then whole days) giving at most this many buckets per metric.',
      type: 'integer',
      minimum: 1,
      maximum: SERIES_LIMITS.maxBuckets,
      default: SERIES_LIMITS.defaultMaxPoints,
    }),
});
export type SeriesQuery = z.output<typeof seriesQuery>;

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
    samples: count('Distinct samples of this GPU (a sample stored twice counts once).'),
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
    samples: count('Distinct samples of this metric (a sample stored twice counts once).'),
    gpus: count('Distinct GPUs reporting it (exact, from rollup_1d).'),
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

export const seriesPointSchema = z
  .object({
    t: timestamp('Bucket start'),
    count: count('Distinct samples in the bucket.'),
    min: z.number(),
    max: z.number(),
    avg: z.number(),
    last: z.number().meta({ description: 'Value of the latest sample in the bucket.' }),
  })
  .meta({ id: 'SeriesPoint' });

export const seriesSchema = z
  .object({
    uuid: z.string(),
    start_time: timestamp('Window start used'),
    end_time: timestamp('Window end used'),
    step: z.string().meta({ description: 'Bucket width used, e.g. `1m`.', example: '1m' }),
    step_seconds: z.number().int().min(1),
    source: z.enum(['rollup_1m', 'rollup_1h', 'rollup_1d', 'raw']).meta({ description: 'What served the buckets: the coarsest rollup whose width divides the step, raw samples otherwise.' }),
    series: z
      .array(z.object({ metric: z.string(), points: z.array(seriesPointSchema).meta({ description: 'In time order; empty buckets are omitted.' }) }))
      .meta({ description: 'One entry per requested metric, in request order.' }),
  })
  .meta({ id: 'Series' });

export const uploadDuplicatesSchema = z
  .object({
    upload_id: z.string(),
    rows_stored: count("The upload's rows in storage (every copy, before collapsing)."),
    already_present: count('Rows of it whose sample (uuid, metric, timestamp) had been stored before them (by an earlier upload or an earlier line).'),
    superseded: count('Samples of it whose value a later upload replaced (the later upload wins).'),
  })
  .meta({ id: 'UploadDuplicates' });

// The error envelope and probe bodies are the same for every HTTP function (shared/http.ts).
export { errorSchema, healthSchema } from '../../shared/api-schemas.ts';
