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

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === '' ? undefined : v));

/** The web console (served at `/`) and the live-sample relay (SSE). */
export const consoleEnv = z.object({
  /**
   * Where browsers reach the upload function (another origin locally, e.g. http://127.0.0.1:8081);
   * the console uploads there and the CSP allows it. Unset: the console's Upload page says uploads
   * are not available from it. The upload function must list the console's origin in
   * UPLOAD_CORS_ORIGINS.
   */
  UPLOAD_PUBLIC_URL: optionalString.pipe(z.string().url().optional()),
  /** Folder of the built console (default: dist/console beside the bundle or in the repository). */
  CONSOLE_DIR: optionalString,
  /** Live (SSE) connections one query process serves; more get 503 with Retry-After. */
  LIVE_MAX_CLIENTS: intVar(1000, 1, 100_000),
  /** Events queued for one slow client before its queue is dropped (it gets a `dropped` event). */
  LIVE_MAX_PENDING: intVar(256, 1, 100_000),
  /** How far back a reconnect with Last-Event-ID resumes (ring buffer of announcements). */
  LIVE_RESUME_WINDOW_MS: intVar(120_000, 0, 3_600_000),
  /** Announcements kept for resuming, at most. */
  LIVE_RING_SIZE: intVar(2048, 1, 1_000_000),
  /** Comment line sent to every live client this often. */
  LIVE_HEARTBEAT_MS: intVar(15_000, 100, 600_000),
  /** Rows the relay reads per announcement, at most. */
  LIVE_MAX_ROWS: intVar(100_000, 1, 10_000_000),
  /** Status file of the local autoscaler (`npm run dev -- --autoscale`); its replicas show on the Pipeline page. */
  AUTOSCALER_STATUS_FILE: optionalString,
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
  .extend(consoleEnv.shape)
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
