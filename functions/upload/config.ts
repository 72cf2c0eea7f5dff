import { z } from 'zod';
import { httpEnv, intVar, natsEnv } from '../../shared/config.ts';

export const uploadEnv = httpEnv.extend(natsEnv.shape).extend({
  /** Largest accepted upload; bigger bodies get 413. */
  UPLOAD_MAX_BYTES: intVar(2 * 1024 ** 3, 1),
  /** Target size of the line-aligned parts ingest workers share. */
  UPLOAD_PART_BYTES: intVar(8 * 1024 ** 2, 1024),
  /** Default for how many reject reasons the status route lists (?reasons= overrides, ≤ 1000). */
  UPLOAD_STATUS_REASONS: intVar(20, 0, 1000),
});
export type UploadConfig = z.infer<typeof uploadEnv>;
