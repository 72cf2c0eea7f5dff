// Pull-worker entry (bundled to dist/collect-worker.js): pulls up to COLLECT_MAX_MESSAGES
// batches (or whatever arrived within COLLECT_MAX_WAIT_MS) and hands them to collect together.
import { parseEnv } from '../../shared/config.ts';
import { clickhouseClient } from '../../shared/clickhouse.ts';
import { CONSUMERS, STREAMS } from '../../shared/names.ts';
import { connectNats } from '../../shared/nats.ts';
import { runWorkerProcess } from '../../shared/worker.ts';
import { collectEnv } from './config.ts';
import { createCollectHandler } from './index.ts';

const cfg = parseEnv(collectEnv);
const ch = clickhouseClient(cfg);
await runWorkerProcess(
  'collect',
  () => connectNats('collect-worker'),
  (nc) => ({
    stream: STREAMS.telemetry,
    consumer: CONSUMERS.collect,
    cfg,
    maxMessages: cfg.COLLECT_MAX_MESSAGES,
    maxWaitMs: cfg.COLLECT_MAX_WAIT_MS,
    concurrency: cfg.COLLECT_CONCURRENCY,
    handle: createCollectHandler(cfg, ch, async () => nc),
    ready: async () => ((await ch.ping()).success ? [] : ['ClickHouse unreachable']),
  }),
  () => ch.close(),
);
