import { z } from 'zod';

// Request and response schemas of the upload routes. The handlers validate with them and the
// descriptions (.meta) are written for the product's OpenAPI document, so the two cannot drift.

// ---------------------------------------------------------------------------------------------
// Requests

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const uploadPathParams = z.object({
  id: z
    .string()
    .regex(UUID, 'must be an upload id (a lower-case UUID)')
    .meta({ description: 'Upload id, as returned by POST /api/v1/uploads.', example: '0b6c4d8e-3f1a-4c2b-9d7e-5a6f8b9c0d1e' }),
});

/** Routes without path parameters. */
export const noPathParams = z.object({});

export const receiveQuery = z.strictObject({
  timestamps: z
    .enum(['csv', 'processing'], { message: 'must be "csv" (keep the CSV timestamps) or "processing" (re-stamp rows)' })
    .optional()
    .meta({ description: '`processing` re-stamps every row with the time it is processed; `csv` (default) keeps the CSV timestamps.' }),
});
export type ReceiveQuery = z.output<typeof receiveQuery>;

export const statusQuery = z.strictObject({
  reasons: z
    .string()
    .regex(/^[0-9]{1,4}$/, 'must be a decimal integer from 0 to 1000')
    .transform(Number)
    .pipe(z.number().int().max(1000, 'must be a decimal integer from 0 to 1000'))
    .optional()
    .meta({ description: 'How many reject reasons to list (default UPLOAD_STATUS_REASONS).', type: 'integer', minimum: 0, maximum: 1000 }),
});
export type StatusQuery = z.output<typeof statusQuery>;

export const IDEMPOTENCY_KEY_MAX = 255;

/** The `Idempotency-Key` request header. */
export const idempotencyKey = z
  .string()
  .min(1, 'must not be empty')
  .max(IDEMPOTENCY_KEY_MAX, `is longer than ${IDEMPOTENCY_KEY_MAX} characters`)
  .regex(/^[\x20-\x7e]*$/, 'must be printable ASCII')
  .meta({
    description:
      'Makes a retry safe: the same key (with the same bearer token) maps to the same upload. A retry of an upload that ' +
      'is received or done answers 202 with that upload (header `Idempotent-Replayed: true`) without reading the body; ' +
      'of a failed or interrupted one, restarts it under the same id; while it is still being received, 409. ' +
      `Up to ${IDEMPOTENCY_KEY_MAX} printable ASCII characters; remembered as long as the upload status (RETENTION_HOURS).`,
    example: '7f3c2a90-upload-2025-07-18',
  });

// ---------------------------------------------------------------------------------------------
// Responses

const count = (description: string) => z.number().int().min(0).meta({ description });
const state = z
  .enum(['receiving', 'received', 'ingesting', 'done', 'failed'])
  .meta({
    description:
      'receiving: the body is arriving; received: stored, not yet ingested; ingesting: rows are being validated and stored; ' +
      'done: every accepted row is stored; failed: see `error` (with `partial`, the rows of the parts received before the failure are kept).',
  });

export const uploadAcceptedSchema = z
  .object({
    id: z.string().meta({ description: 'Upload id.' }),
    state,
    status_url: z.string().meta({ description: 'Where to follow the upload (GET).', example: '/api/v1/uploads/0b6c4d8e-3f1a-4c2b-9d7e-5a6f8b9c0d1e' }),
    bytes: count('Bytes of CSV stored (after gzip decoding).'),
    parts: count('Line-aligned parts the file was split into.'),
    replayed: z.boolean().optional().meta({ description: 'True when this answers a retry with the Idempotency-Key of an upload already received.' }),
  })
  .meta({ id: 'UploadAccepted', description: 'The upload was stored; rows are validated and stored asynchronously.' });
export type UploadAccepted = z.infer<typeof uploadAcceptedSchema>;

export const rejectSchema = z
  .object({ line: z.number().int().meta({ description: 'Physical line of the file (1 = header).' }), reason: z.string() })
  .meta({ id: 'RowReject' });

export const uploadStatusSchema = z
  .object({
    id: z.string(),
    state,
    filename: z.string().optional(),
    bytes: count('Bytes of CSV stored so far.'),
    parts: count('Parts of the file (when received), or the parts kept (when failed).').optional(),
    parts_ingested: count('Parts whose rows have been validated.'),
    rows_accepted: count('Valid rows.'),
    rows_rejected: count('Invalid rows (see rejects).'),
    rows_stored: count('Rows stored in ClickHouse.'),
    created_at: z.string().meta({ format: 'date-time' }),
    received_at: z.string().optional().meta({ format: 'date-time' }),
    attempt: count('1, plus one per Idempotency-Key retry that restarted a failed upload.'),
    partial: z.boolean().optional().meta({ description: 'Failed after some complete parts were received: their rows are kept and counted.' }),
    error: z.string().optional(),
    rejects: z.array(rejectSchema).meta({ description: 'The first reject reasons, by line.' }),
  })
  .meta({ id: 'UploadStatus' });
export type UploadStatus = z.infer<typeof uploadStatusSchema>;
