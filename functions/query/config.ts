import { z } from 'zod';
import { clickhouseEnv, httpEnv, intVar, natsEnv } from '../../shared/config.ts';

export const QUERY_LIMIT_DEFAULTS = { defaultLimit: 1000, maxLimit: 10_000 } as const;

export const queryEnv = httpEnv
  .extend(clickhouseEnv.shape)
  .extend(natsEnv.shape)
  .extend({
    /** Page size of /telemetry when the request gives no `limit`. */
    QUERY_DEFAULT_LIMIT: intVar(QUERY_LIMIT_DEFAULTS.defaultLimit, 1),
    /** Largest accepted `limit`; larger values are rejected with 400 rather than clamped. */
    QUERY_MAX_LIMIT: intVar(QUERY_LIMIT_DEFAULTS.maxLimit, 1, 1_000_000),
  })
  .refine((c) => c.QUERY_DEFAULT_LIMIT <= c.QUERY_MAX_LIMIT, {
    message: 'QUERY_DEFAULT_LIMIT must not exceed QUERY_MAX_LIMIT',
    path: ['QUERY_DEFAULT_LIMIT'],
  });
export type QueryConfig = z.infer<typeof queryEnv>;

export interface Limits {
  defaultLimit: number;
  maxLimit: number;
}
export const limitsOf = (cfg: Pick<QueryConfig, 'QUERY_DEFAULT_LIMIT' | 'QUERY_MAX_LIMIT'>): Limits => ({
  defaultLimit: cfg.QUERY_DEFAULT_LIMIT,
  maxLimit: cfg.QUERY_MAX_LIMIT,
});
