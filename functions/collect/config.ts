import { z } from 'zod';
import { clickhouseEnv, intVar, natsEnv, workerEnv } from '../../shared/config.ts';
import { ROLLUP_KEYS_PER_STATEMENT, ROLLUP_SLICE_CONCURRENCY } from '../../shared/rollups.ts';

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
  /** How long a pull waits for more messages before inserting what it has (upload batches: less, once ingest is idle; worker.ts). */
  COLLECT_MAX_WAIT_MS: intVar(1000, 1000, 60_000),
  /** Pull/insert loops per process (one insert can run while the next batch is pulled). */
  COLLECT_CONCURRENCY: intVar(2, 1, 16),
  /**
   * Rollup passes (pending.ts): one pass takes pending events until their batches hold this many
   * rows (it bounds the recompute statements' work), at most COLLECT_ROLLUP_MAX_EVENTS events (their
   * batch ids travel as one query parameter), or what arrived within COLLECT_ROLLUP_MAX_WAIT_MS
   * (what lets passes grow; the wait ends early once this process holds no batch: worker.ts).
   */
  COLLECT_ROLLUP_MAX_ROWS: intVar(1_000_000, 1, 5_000_000),
  COLLECT_ROLLUP_MAX_EVENTS: intVar(200, 1, 200),
  COLLECT_ROLLUP_MAX_WAIT_MS: intVar(500, 100, 60_000),
  /** (uuid, minute) keys one recompute statement covers at most; a pass runs in slices of GPUs (shared/rollups.ts). */
  COLLECT_ROLLUP_KEYS_PER_STATEMENT: intVar(ROLLUP_KEYS_PER_STATEMENT, 1, 10_000_000),
  /** Slices of one pass recomputed at once (each slice's statements run in order). */
  COLLECT_ROLLUP_SLICE_CONCURRENCY: intVar(ROLLUP_SLICE_CONCURRENCY, 1, 8),
});
export type CollectConfig = z.infer<typeof collectEnv>;
