import { z } from 'zod';
import { intVar, natsEnv, workerEnv } from '../../shared/config.ts';

export const ingestEnv = natsEnv.extend(workerEnv.shape).extend({
  /** Rows per published batch (one JetStream message, one unit of collect's dedup). */
  INGEST_BATCH_ROWS: intVar(5000, 1, 50_000),
  /**
   * csv: keep each row's own timestamp (default). processing: stamp rows with the time they are
   * processed (the original assignment's streamer behaviour; useful to replay a file as live data).
   * An upload can choose per request with ?timestamps=processing.
   */
  INGEST_TIMESTAMP_MODE: z.enum(['csv', 'processing']).default('csv'),
  /** Reject reasons kept per part (counts are always exact). */
  INGEST_MAX_REJECT_REASONS: intVar(100, 0, 10_000),
  /** Batches published concurrently while parsing continues. */
  INGEST_PUBLISH_WINDOW: intVar(8, 1, 256),
});
export type IngestConfig = z.infer<typeof ingestEnv>;
