import { z } from 'zod';
import { clickhouseEnv, intVar, natsEnv, workerEnv } from '../../shared/config.ts';

export const collectEnv = natsEnv.extend(clickhouseEnv.shape).extend(workerEnv.shape).extend({
  /** Rows per INSERT; one INSERT is one block and one part, so it is stored atomically. */
  COLLECT_MAX_ROWS: intVar(100_000, 1, 1_000_000),
  /** Batch messages pulled at once (each holds up to INGEST_BATCH_ROWS rows). */
  COLLECT_MAX_MESSAGES: intVar(40, 1, 1000),
  /** How long a pull waits for more messages before inserting what it has. */
  COLLECT_MAX_WAIT_MS: intVar(1000, 1000, 60_000),
  /** Pull/insert loops per process (one insert can run while the next batch is pulled). */
  COLLECT_CONCURRENCY: intVar(2, 1, 16),
});
export type CollectConfig = z.infer<typeof collectEnv>;
