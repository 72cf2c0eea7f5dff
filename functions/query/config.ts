import { z } from 'zod';
import { clickhouseEnv, httpEnv, httpTimeoutsRule, intVar, natsEnv } from '../../shared/config.ts';

export const QUERY_LIMIT_DEFAULTS = { defaultLimit: 1000, maxLimit: 10_000 } as const;

const secret = z.string().min(32, 'must be at least 32 characters (e.g. `openssl rand -base64 32`)');

/** Keys that sign page cursors (functions/query/cursor.ts); from the Secret in a cluster. */
export const cursorEnv = z.object({
  /** Signs and verifies cursors. Unset: a random key per process (cursors die with it; a warning says so). */
  CURSOR_SECRET: z
    .string()
    .optional()
    .transform((v) => (v === '' ? undefined : v))
    .pipe(secret.optional()),
  /** Rotated-out secrets, comma-separated: still accepted for cursors they signed, never used to sign. */
  CURSOR_SECRET_PREVIOUS: z
    .string()
    .optional()
    .transform((v) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean))
    .pipe(z.array(secret)),
  /** How long a cursor stays valid; also how long CURSOR_SECRET_PREVIOUS must be kept after a rotation. */
  CURSOR_MAX_AGE_S: intVar(86_400, 60, 30 * 86_400),
});

export const queryEnv = httpEnv
  .extend(clickhouseEnv.shape)
  .extend(natsEnv.shape)
  .extend(cursorEnv.shape)
  .extend({
    /** Page size of /telemetry when the request gives no `limit`. */
    QUERY_DEFAULT_LIMIT: intVar(QUERY_LIMIT_DEFAULTS.defaultLimit, 1),
    /** Largest accepted `limit`; larger values are rejected with 400 rather than clamped. */
    QUERY_MAX_LIMIT: intVar(QUERY_LIMIT_DEFAULTS.maxLimit, 1, 1_000_000),
  })
  .refine((c) => c.QUERY_DEFAULT_LIMIT <= c.QUERY_MAX_LIMIT, {
    message: 'QUERY_DEFAULT_LIMIT must not exceed QUERY_MAX_LIMIT',
    path: ['QUERY_DEFAULT_LIMIT'],
  })
  .superRefine(httpTimeoutsRule);
export type QueryConfig = z.infer<typeof queryEnv>;

export interface Limits {
  defaultLimit: number;
  maxLimit: number;
}
export const limitsOf = (cfg: Pick<QueryConfig, 'QUERY_DEFAULT_LIMIT' | 'QUERY_MAX_LIMIT'>): Limits => ({
  defaultLimit: cfg.QUERY_DEFAULT_LIMIT,
  maxLimit: cfg.QUERY_MAX_LIMIT,
});
