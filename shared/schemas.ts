import { z } from 'zod';
import { parseDecimal, parseInstant, textProblem, type TextRule } from './sample-rules.ts';

// Schemas crossing function boundaries: the DCGM CSV layout, event payloads and the upload
// status record (written by upload, ingest and collect; read by upload's status route).

/** The DCGM exporter CSV header, in file order. */
export const DCGM_COLUMNS = [
  'timestamp', 'metric_name', 'gpu_id', 'device', 'uuid', 'modelName', 'Hostname',
  'container', 'pod', 'namespace', 'value', 'labels_raw',
] as const;
export type DcgmColumn = (typeof DCGM_COLUMNS)[number];

/**
 * Header spellings accepted for a column besides its own name: dcgm-exporter renamed the
 * `Hostname` label to `hostname` (2026), and CSV dumps follow the labels.
 */
export const COLUMN_ALIASES: Readonly<Record<string, DcgmColumn>> = { hostname: 'Hostname' };

/** The canonical column a header cell names (trimmed, aliases resolved), or the cell itself. */
export const canonicalColumn = (cell: string): string => {
  const name = cell.trim();
  return COLUMN_ALIASES[name] ?? name;
};

/** A name from the input (header cell, form field) as it may appear in an error: printable ASCII only, never raw bytes. */
export const printableName = (cell: string, what = 'a column name'): string =>
  /^[\x20-\x7e]{1,64}$/.test(cell) ? cell : `(${what} of ${cell.length} characters that is not printable ASCII)`;

/** Names the missing, unknown and duplicated columns of a header, or returns undefined when it is usable. */
export function headerProblem(header: readonly string[]): string | undefined {
  const names = header.map(canonicalColumn);
  const seen = new Set(names);
  const missing = DCGM_COLUMNS.filter((c) => !seen.has(c));
  const unknown = [...seen].filter((c) => !(DCGM_COLUMNS as readonly string[]).includes(c));
  const duplicated = names.filter((h, i) => names.indexOf(h) !== i);
  const parts: string[] = [];
  if (missing.length) parts.push(`missing column(s): ${missing.join(', ')}`);
  if (unknown.length) parts.push(`unknown column(s): ${unknown.map((c) => printableName(c)).join(', ')}`);
  if (duplicated.length) parts.push(`duplicated column(s): ${[...new Set(duplicated)].join(', ')}`);
  return parts.length ? `invalid CSV header: ${parts.join('; ')} (expected: ${DCGM_COLUMNS.join(',')}; hostname may replace Hostname)` : undefined;
}

/** A zod string checked by one of the shared sample rules (shared/sample-rules.ts). */
const ruled = <T>(check: (s: string) => T | string) =>
  z.string().transform((s, ctx): T => {
    const r = check(s);
    if (typeof r === 'string') {
      ctx.addIssue({ code: 'custom', message: r });
      return z.NEVER;
    }
    return r;
  });

const text = (rule: TextRule) =>
  z.string().superRefine((s, ctx) => {
    const problem = textProblem(s, rule);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

/** RFC 3339 instant within the store's range → epoch milliseconds (sub-millisecond digits truncated). */
export const rfc3339 = ruled((s) => parseInstant(s, 'down'));

/** The text columns of a DCGM row and their rules (also applied by ingest's byte-level path). */
export const DCGM_TEXT_RULES = {
  metric_name: { max: 128, required: true, name: true },
  gpu_id: { max: 32, name: true },
  device: { max: 64, name: true },
  uuid: { max: 128, required: true, name: true },
  modelName: { max: 128, name: true },
  Hostname: { max: 255, name: true },
  container: { max: 255, name: true },
  pod: { max: 255, name: true },
  namespace: { max: 255, name: true },
  labels_raw: { max: 16_384 },
} as const satisfies Partial<Record<DcgmColumn, TextRule>>;

/** One CSV row (strings as csv-parse yields them) → a typed sample. The reference row rules. */
export const dcgmRow = z.object({
  timestamp: rfc3339,
  metric_name: text(DCGM_TEXT_RULES.metric_name),
  gpu_id: text(DCGM_TEXT_RULES.gpu_id),
  device: text(DCGM_TEXT_RULES.device),
  uuid: text(DCGM_TEXT_RULES.uuid),
  modelName: text(DCGM_TEXT_RULES.modelName),
  Hostname: text(DCGM_TEXT_RULES.Hostname),
  container: text(DCGM_TEXT_RULES.container),
  pod: text(DCGM_TEXT_RULES.pod),
  namespace: text(DCGM_TEXT_RULES.namespace),
  value: ruled(parseDecimal),
  labels_raw: text(DCGM_TEXT_RULES.labels_raw),
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
  /**
   * When the upload was received (epoch ms): stored with every row as `received_at`, which
   * orders copies of the same sample (the later upload wins) and is the retention clock.
   */
  receivedAt: z.number().int().min(0),
});
export type UploadedPart = z.infer<typeof uploadedPart>;

export const rejectReason = z.object({ line: z.number().int(), reason: z.string() });
export type RejectReason = z.infer<typeof rejectReason>;

/** KV `upload_status/<id>`: written by upload (the receiving replica, or a replica reaping it). */
export const uploadRecord = z.object({
  id: z.string(),
  filename: z.string().optional(),
  state: z.enum(['receiving', 'received', 'failed']),
  bytes: z.number().int(),
  /** Known once the whole body is stored (on failure: the parts kept, i.e. announced). */
  parts: z.number().int().optional(),
  createdAt: z.string(),
  receivedAt: z.string().optional(),
  error: z.string().optional(),
  restamp: z.boolean().default(false),
  /** 1, then +1 each time an Idempotency-Key retry restarts a failed upload under the same id. */
  attempt: z.number().int().min(1).default(1),
  /** While receiving: the replica holding the upload and until when (epoch ms); renewed by it, reaped by any replica after. */
  lease: z.object({ owner: z.string(), until: z.number() }).optional(),
  /** The validated CSV header (the announcement of every part carries it). */
  columns: z.array(z.string()).optional(),
  /** Part size this upload is split with (a retry splits the same way, so part and batch ids repeat). */
  partBytes: z.number().int().optional(),
  /** Parts of this attempt whose objects are complete. */
  stored: z.number().int().default(0),
  /** Parts of this attempt whose csv.uploaded event is published (these are kept if the upload fails). */
  announced: z.number().int().default(0),
  /** The object being written now: its chunks may exist without a meta if the writer dies. */
  writing: z.object({ part: z.number().int(), nuid: z.string() }).optional(),
  /** The part whose event is being published now (re-published, deduplicated, by whoever finishes the upload). */
  announcing: z.object({ part: z.number().int(), firstLine: z.number().int(), bytes: z.number().int() }).optional(),
  /** Content-Length and Content-Encoding of the request, to refuse an Idempotency-Key reused for another body. */
  declared: z.object({ bytes: z.number().int().optional(), encoding: z.string() }).optional(),
  /** Set when the upload failed after some complete parts were announced: those rows are kept. */
  partial: z.boolean().optional(),
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

/** Core NATS `SUBJECTS.stored`: collect's note that these batches are in ClickHouse (live views). */
export const storedAnnouncement = z.object({
  batches: z.array(z.string().max(200)).max(10_000),
  rows: z.number().int().nonnegative().catch(0),
});
export type StoredAnnouncement = z.infer<typeof storedAnnouncement>;
