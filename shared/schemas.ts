import { z } from 'zod';

// Schemas crossing function boundaries: the DCGM CSV layout, event payloads and the upload
// status record (written by upload, ingest and collect; read by upload's status route).

/** The DCGM exporter CSV header, in file order. */
export const DCGM_COLUMNS = [
  'timestamp', 'metric_name', 'gpu_id', 'device', 'uuid', 'modelName', 'Hostname',
  'container', 'pod', 'namespace', 'value', 'labels_raw',
] as const;
export type DcgmColumn = (typeof DCGM_COLUMNS)[number];

/** Names the missing and unknown columns of a header, or returns undefined when it is usable. */
export function headerProblem(header: readonly string[]): string | undefined {
  const names = header.map((h) => h.trim());
  const seen = new Set(names);
  const missing = DCGM_COLUMNS.filter((c) => !seen.has(c));
  const unknown = [...seen].filter((c) => !(DCGM_COLUMNS as readonly string[]).includes(c));
  const duplicated = names.filter((h, i) => names.indexOf(h) !== i);
  const parts: string[] = [];
  if (missing.length) parts.push(`missing column(s): ${missing.join(', ')}`);
  if (unknown.length) parts.push(`unknown column(s): ${unknown.join(', ')}`);
  if (duplicated.length) parts.push(`duplicated column(s): ${[...new Set(duplicated)].join(', ')}`);
  return parts.length ? `invalid CSV header: ${parts.join('; ')} (expected: ${DCGM_COLUMNS.join(',')})` : undefined;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** RFC 3339 timestamp → epoch milliseconds. */
export const rfc3339 = z
  .string()
  .regex(RFC3339, 'must be an RFC 3339 timestamp, e.g. 2025-07-18T20:42:34Z')
  .transform((s, ctx) => {
    const ms = Date.parse(s.replace(' ', 'T'));
    if (Number.isNaN(ms)) {
      ctx.addIssue({ code: 'custom', message: 'is not a valid date' });
      return z.NEVER;
    }
    return ms;
  });

const text = (max: number) => z.string().max(max, `longer than ${max} characters`);
const required = (max: number) => text(max).min(1, 'is required');

/** One CSV row (strings as csv-parse yields them) → a typed sample. */
export const dcgmRow = z.object({
  timestamp: rfc3339,
  metric_name: required(128),
  gpu_id: text(32),
  device: text(64),
  uuid: required(128),
  modelName: text(128),
  Hostname: text(255),
  container: text(255),
  pod: text(255),
  namespace: text(255),
  value: z
    .string()
    .trim()
    .min(1, 'is required')
    .transform((s, ctx) => {
      const n = Number(s);
      if (!Number.isFinite(n)) {
        ctx.addIssue({ code: 'custom', message: `is not a finite number: "${s.slice(0, 40)}"` });
        return z.NEVER;
      }
      return n;
    }),
  labels_raw: text(16_384),
});
export type DcgmRow = z.input<typeof dcgmRow>;
export type Sample = z.output<typeof dcgmRow>;

/** Data of the `csv.uploaded` CloudEvent: one stored, line-aligned part of an upload. */
export const uploadedPart = z.object({
  uploadId: z.string().min(1),
  part: z.number().int().min(0),
  /** Object store name of the part. */
  object: z.string().min(1),
  /** The file's header; parts after the first do not repeat it. */
  header: z.array(z.string()),
  /** 1-based line number (in the whole file) of the part's first record. */
  firstLine: z.number().int().min(1),
  bytes: z.number().int().min(0),
  /** Re-stamp rows with processing time instead of the CSV timestamp. */
  restamp: z.boolean().default(false),
});
export type UploadedPart = z.infer<typeof uploadedPart>;

export const rejectReason = z.object({ line: z.number().int(), reason: z.string() });
export type RejectReason = z.infer<typeof rejectReason>;

/** KV `upload_status/<id>`: written by upload. */
export const uploadRecord = z.object({
  id: z.string(),
  filename: z.string().optional(),
  state: z.enum(['receiving', 'received', 'failed']),
  bytes: z.number().int(),
  /** Known once the whole body is stored. */
  parts: z.number().int().optional(),
  createdAt: z.string(),
  receivedAt: z.string().optional(),
  error: z.string().optional(),
  restamp: z.boolean().default(false),
});
export type UploadRecord = z.infer<typeof uploadRecord>;

/** KV `upload_status/<id>.part.<n>`: written by ingest when it finishes (or fails) a part. */
export const partResult = z.object({
  part: z.number().int(),
  state: z.enum(['done', 'failed']),
  accepted: z.number().int(),
  rejected: z.number().int(),
  batches: z.number().int(),
  rejects: z.array(rejectReason),
  error: z.string().optional(),
});
export type PartResult = z.infer<typeof partResult>;
