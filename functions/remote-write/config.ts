import { z } from 'zod';
import { httpEnv, intVar, natsEnv } from '../../shared/config.ts';

export const remoteWriteEnv = httpEnv.extend(natsEnv.shape).extend({
  /** Largest accepted request body as sent (snappy-compressed); larger ones get 413. */
  REMOTE_WRITE_MAX_BYTES: intVar(4 * 1024 ** 2, 1024, 256 * 1024 ** 2),
  /**
   * Largest decompressed WriteRequest (snappy declares it up front, checked before allocating);
   * larger ones get 413. Memory per request is a few times this (8 requests of ~7.4 MB decoded
   * in flight peaked at 495–545 MiB), so it bounds a pod's memory together with containerConcurrency.
   * vmagent sends at most 8 MB, Prometheus ~0.7 MiB per 2,000 DCGM samples.
   */
  REMOTE_WRITE_MAX_DECODED_BYTES: intVar(8 * 1024 ** 2, 1024, 1024 ** 3),
  /** Samples per published batch (one JetStream message, one unit of collect's dedup). */
  REMOTE_WRITE_BATCH_ROWS: intVar(5000, 1, 50_000),
  /**
   * Series whose mapping (row rules) is remembered; a DCGM node exports a few hundred. Emptied
   * when full; about 1 KiB each.
   */
  REMOTE_WRITE_SERIES_CACHE: intVar(20_000, 0, 1_000_000),
  /**
   * How long one publish may wait for JetStream's ack before the request fails with 503 (the
   * sender retries). Below Prometheus's default remote_timeout of 30 s.
   */
  REMOTE_WRITE_PUBLISH_TIMEOUT_MS: intVar(10_000, 100, 120_000),
});
export type RemoteWriteConfig = z.infer<typeof remoteWriteEnv>;
