import { z } from 'zod';
import { clickhouseEnv, intVar, natsEnv, workerEnv } from '../../shared/config.ts';

export const collectEnv = natsEnv.extend(clickhouseEnv.shape).extend(workerEnv.shape).extend({
  /** Rows per INSERT; one INSERT is one block and one part, so it is stored atomically. */
  COLLECT_MAX_ROWS: intVar(100_000, 1, 1_000_000),
  /** Batch messages held at once per loop (each holds up to INGEST_BATCH_ROWS rows). */
  COLLECT_MAX_MESSAGES: intVar(40, 1, 1000),
  /**
   * Payload bytes held at once per loop (pulled, buffered or being inserted): above the largest
   * batch message (8 MiB), and with COLLECT_CONCURRENCY loops below nats-server's 64 MiB
   * per-client pending buffer.
   */
  COLLECT_MAX_BYTES: intVar(24 * 1024 * 1024, 9 * 1024 * 1024, 256 * 1024 * 1024),
  /** How long a pull waits for more messages before inserting what it has. */
  COLLECT_MAX_WAIT_MS: intVar(1000, 1000, 60_000),
  /** Pull/insert loops per process (one insert can run while the next batch is pulled). */
  COLLECT_CONCURRENCY: intVar(2, 1, 16),
});
export type CollectConfig = z.infer<typeof collectEnv>;
