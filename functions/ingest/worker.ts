// Pull-worker entry (bundled to dist/ingest-worker.js): one part at a time per process (parsing
// is CPU-bound, so replicas — not in-process concurrency — are the unit KEDA scales).
import { parseEnv } from '../../shared/config.ts';
import { CONSUMERS, STREAMS } from '../../shared/names.ts';
import { connectNats } from '../../shared/nats.ts';
import { runWorkerProcess } from '../../shared/worker.ts';
import { zstdReady } from '../../shared/zstd.ts';
import { ingestEnv } from './config.ts';
import { createIngestHandler } from './index.ts';

const cfg = parseEnv(ingestEnv);
// Batches are zstd-compressed: a missing or broken zstd.wasm fails the start, not every part.
await zstdReady();
await runWorkerProcess('ingest', () => connectNats('ingest-worker'), (nc) => {
  const ingest = createIngestHandler(cfg, async () => nc);
  return {
    stream: STREAMS.uploads,
    consumer: CONSUMERS.ingest,
    cfg,
    maxMessages: 1,
    maxWaitMs: 5000,
    handle: async (events) => {
      for (const e of events) await ingest(e);
    },
  };
});
