import { z } from 'zod';
import { decodeListCursor, MAX_CURSOR_LENGTH, type CursorSigner, type ListCursor } from './cursor.ts';
import { count, gpuSchema, limitParam, metricParam, timeParam, timestamp } from './schemas.ts';

// Parameters and answers of the fleet routes (/gpus, /hosts, /metrics/{metric}/top, /anomalies).
// Same rules as schemas.ts: the handlers validate with these and the OpenAPI document is made
// from them.

export const LIST_LIMITS = { defaultLimit: 100, maxLimit: 1000 } as const;
export const TOP_LIMITS = { defaultLimit: 10, maxLimit: 1000 } as const;
export const FLAG_KINDS = ['thermal', 'xid', 'idle_allocated', 'stale'] as const;
export type FlagKind = (typeof FLAG_KINDS)[number];

/** Cursor kinds: a cursor of one listing is refused by another. */
export const LIST_KINDS = { gpus: 'gpus', hosts: 'hosts', anomalies: 'anomalies' } as const;

const listCursorParam = (kind: string, signer?: CursorSigner) =>
  z
    .string()
    .max(MAX_CURSOR_LENGTH, 'is too long')
    .transform((s, ctx): ListCursor => {
      const decoded = signer ? decodeListCursor(signer, kind, s) : 'cannot be verified (no cursor key)';
      if (typeof decoded === 'string') {
        ctx.addIssue({ code: 'custom', message: decoded });
        return z.NEVER;
      }
      return decoded;
    })
    .optional()
    .meta({ description: 'Opaque page token: the `next_cursor` of the previous page, used with the same filters.' });

const label = (description: string, example?: string) =>
  z.string().min(1, 'must not be empty').max(256, 'is longer than 256 characters').optional().meta({ description, example });

const windowStart = timeParam('up', 'Window start (inclusive), RFC 3339.', '2025-07-18T20:00:00Z');
const windowEnd = timeParam('down', 'Window end (exclusive), RFC 3339.', '2025-07-18T21:00:00Z');

export const gpusQuery = (cursors?: CursorSigner) =>
  z.strictObject({
    limit: limitParam(LIST_LIMITS, 'GPUs'),
    cursor: listCursorParam(LIST_KINDS.gpus, cursors),
    hostname: label('Only GPUs of this host (exact).', 'mtv5-dgx1-hgpu-031'),
    model_name: label('Only GPUs of this model (exact).', 'NVIDIA H100 80GB HBM3'),
    metric: metricParam.meta({ description: 'Only GPUs that reported this metric.', example: 'DCGM_FI_DEV_GPU_UTIL' }),
    seen_after: timeParam('up', 'Only GPUs whose latest sample is at or after this instant.', '2025-07-18T00:00:00Z'),
    seen_before: timeParam('down', 'Only GPUs whose earliest sample is at or before this instant.', '2025-07-19T00:00:00Z'),
    uuid_prefix: z
      .string()
      .min(1, 'must not be empty')
      .max(128, 'is longer than 128 characters')
      .optional()
      .meta({ description: 'Only GPUs whose uuid starts with this.', example: 'GPU-5f' }),
  });
export type GpusQuery = z.output<ReturnType<typeof gpusQuery>>;

export const hostsQuery = (cursors?: CursorSigner) =>
  z.strictObject({ limit: limitParam(LIST_LIMITS, 'hosts'), cursor: listCursorParam(LIST_KINDS.hosts, cursors) });

export const metricPathParams = z.object({
  metric: z
    .string()
    .min(1, 'must not be empty')
    .max(128, 'is longer than 128 characters')
    .meta({ description: 'DCGM metric name.', example: 'DCGM_FI_DEV_GPU_TEMP' }),
});

export const TOP_BY = ['avg', 'max', 'min', 'last'] as const;
export type TopBy = (typeof TOP_BY)[number];

export const topQuery = z.strictObject({
  start_time: windowStart,
  end_time: windowEnd,
  by: z.enum(TOP_BY, { message: `must be one of ${TOP_BY.join(', ')}` }).default('avg').meta({ description: 'Statistic per GPU over the window.' }),
  order: z.enum(['desc', 'asc'], { message: 'must be desc or asc' }).default('desc').meta({ description: 'desc: highest first.' }),
  limit: limitParam(TOP_LIMITS, 'GPUs'),
});
export type TopQuery = z.output<typeof topQuery>;

export const anomaliesQuery = (cursors?: CursorSigner) =>
  z.strictObject({
    start_time: windowStart,
    end_time: windowEnd,
    kind: z.enum(FLAG_KINDS, { message: `must be one of ${FLAG_KINDS.join(', ')}` }).optional().meta({ description: 'Only this kind of anomaly.' }),
    hostname: label('Only GPUs of this host (exact).'),
    limit: limitParam(LIST_LIMITS, 'anomalies'),
    cursor: listCursorParam(LIST_KINDS.anomalies, cursors),
  });
export type AnomaliesQuery = z.output<ReturnType<typeof anomaliesQuery>>;

// ---------------------------------------------------------------------------------------------
// Answers

const nextCursor = z.string().nullable().meta({ description: 'Pass as `cursor` for the next page; null on the last page.' });

export const gpuPageSchema = z
  .object({
    gpus: z
      .array(
        gpuSchema.extend({
          flags: z.array(z.enum(FLAG_KINDS)).meta({ description: 'Health flags over the last FLAGS_WINDOW_S before the fleet\'s latest sample (see /api/v1/anomalies).' }),
        }),
      )
      .meta({ description: 'Ordered by uuid.' }),
    count: count('GPUs in this page.'),
    next_cursor: nextCursor,
  })
  .meta({ id: 'GpuPage' });

export const hostSchema = z
  .object({
    hostname: z.string(),
    gpus: count('GPUs seen on this host.'),
    models: z.array(z.string()).meta({ description: 'GPU models on this host, sorted.' }),
    first_seen: timestamp('Earliest sample of the host'),
    last_seen: timestamp('Latest sample of the host'),
  })
  .meta({ id: 'Host' });

export const hostPageSchema = z
  .object({ hosts: z.array(hostSchema).meta({ description: 'Ordered by hostname.' }), next_cursor: nextCursor })
  .meta({ id: 'HostPage' });

const sourceSchema = z.enum(['rollup_1m', 'rollup_1h', 'rollup_1d', 'raw']).meta({ description: 'What served the answer.' });

export const topSchema = z
  .object({
    metric: z.string(),
    by: z.enum(TOP_BY),
    order: z.enum(['desc', 'asc']),
    start_time: timestamp('Window start (inclusive)'),
    end_time: timestamp('Window end (exclusive)'),
    source: sourceSchema,
    gpus: z.array(
      z.object({
        uuid: z.string(),
        hostname: z.string(),
        model_name: z.string(),
        value: z.number().meta({ description: 'The `by` statistic of the metric over the window.' }),
        count: count('Samples of the metric in the window.'),
      }),
    ),
  })
  .meta({ id: 'TopGpus' });

export const anomalySchema = z
  .object({
    uuid: z.string(),
    hostname: z.string(),
    model_name: z.string(),
    kind: z.enum(FLAG_KINDS),
    detail: z.record(z.string(), z.unknown()).meta({ description: 'Evidence, per kind (thresholds, share, codes, interval…).' }),
    first_seen: timestamp('Earliest sample of the GPU in the window'),
    last_seen: timestamp('Latest sample of the GPU in the window'),
  })
  .meta({ id: 'Anomaly' });

export const anomalyPageSchema = z
  .object({
    start_time: timestamp('Window start (inclusive)'),
    end_time: timestamp('Window end (exclusive)'),
    anomalies: z.array(anomalySchema).meta({ description: 'Ordered by uuid, then kind.' }),
    next_cursor: nextCursor,
  })
  .meta({ id: 'AnomalyPage' });
