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

const numberVar = (def: number, min: number, max: number) => z.coerce.number().min(min).max(max).default(def);

/** Health-flag thresholds (functions/query/anomalies.ts; README "Health flags"). */
export const flagEnv = z.object({
  /** thermal: a minute is hot when its mean DCGM_FI_DEV_GPU_TEMP is above this (°C). */
  THERMAL_THRESHOLD_C: numberVar(85, -50, 200),
  /** thermal fires when at least this share (0–1) of the window's minutes with a temperature are hot. */
  THERMAL_MIN_SHARE: numberVar(0.5, 0, 1),
  /**
   * idle_allocated: DCGM_FI_DEV_FB_USED above this many MiB counts as memory in use. Not 0: the
   * bundled DCGM export shows 4–7 MiB reserved by the driver on GPUs nobody uses.
   */
  IDLE_MEMORY_MIB: numberVar(64, 0, 10_000_000),
  /** stale: the last sample is older than this many times the GPU's usual interval at the window end. */
  STALE_FACTOR: numberVar(3, 1, 1000),
  /** Window of `flags` in /api/v1/gpus and of /api/v1/anomalies without start_time: seconds before the fleet's latest sample. */
  FLAGS_WINDOW_S: intVar(3600, 60, 90 * 86_400),
});
export type FlagConfig = z.infer<typeof flagEnv>;

export const queryEnv = httpEnv
  .extend(clickhouseEnv.shape)
  .extend(natsEnv.shape)
  .extend(cursorEnv.shape)
  .extend(flagEnv.shape)
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
