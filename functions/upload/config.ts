import { z } from 'zod';
import { httpEnv, httpTimeoutsRule, intVar, natsEnv } from '../../shared/config.ts';

export const uploadEnv = httpEnv
  .extend(natsEnv.shape)
  .extend({
    /** A whole upload must arrive within this (Knative's timeoutSeconds for the upload is 600 s). */
    HTTP_REQUEST_TIMEOUT_MS: intVar(600_000, 1000, 3_600_000),
    /** Largest accepted upload (after gzip decoding too); bigger bodies get 413. */
    UPLOAD_MAX_BYTES: intVar(2 * 1024 ** 3, 1),
    /** Target size of the line-aligned parts ingest workers share. */
    UPLOAD_PART_BYTES: intVar(8 * 1024 ** 2, 1024),
    /** Default for how many reject reasons the status route lists (?reasons= overrides, ≤ 1000). */
    UPLOAD_STATUS_REASONS: intVar(20, 0, 1000),
    /**
     * Lease of the replica receiving an upload, renewed every third of it. An upload whose
     * receiver died is failed by any upload replica once the lease ran out (on its next sweep, or
     * at once when its status is read).
     */
    UPLOAD_LEASE_MS: intVar(30_000, 1000, 3_600_000),
    /** How often each upload replica looks for uploads with an expired lease. */
    UPLOAD_REAP_INTERVAL_MS: intVar(10_000, 100, 3_600_000),
    /**
     * Browser origins allowed to call the upload API (CORS), comma-separated, e.g. the query
     * function's console at http://127.0.0.1:8082. Unset: no cross-origin access.
     */
    UPLOAD_CORS_ORIGINS: z
      .string()
      .optional()
      .transform((v) => (v ?? '').split(',').map((s) => s.trim().replace(/\/$/, '')).filter(Boolean))
      .pipe(z.array(z.string().url('must be a list of origins like https://console.example.com'))),
  })
  .superRefine(httpTimeoutsRule);
export type UploadConfig = z.infer<typeof uploadEnv>;
