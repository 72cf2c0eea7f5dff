// Pull-worker entry (bundled to dist/collect-worker.js), two consumers:
// - TELEMETRY/collect: hands collect up to COLLECT_MAX_ROWS rows of batches at once (at most
//   COLLECT_MAX_MESSAGES, or whatever arrived within COLLECT_MAX_WAIT_MS, or what is buffered once
//   ingest has nothing left), holding at most COLLECT_MAX_BYTES of them per loop;
// - ROLLUPS/rollups: hands it the pending rollup passes, many at once (pending.ts), one loop.
import type { JsMsg } from 'nats';
import { parseEnv } from '../../shared/config.ts';
import { clickhouseClient, clickhouseReadiness } from '../../shared/clickhouse.ts';
import { consumerActivity } from '../../shared/consumer-activity.ts';
import { CONSUMERS, EVENT_SOURCES, STREAMS } from '../../shared/names.ts';
import { connectNats } from '../../shared/nats.ts';
import { runWorkerProcess } from '../../shared/worker.ts';
import { collectEnv } from './config.ts';
import { createCollectHandler } from './index.ts';

const cfg = parseEnv(collectEnv);
const ch = clickhouseClient(cfg);
await runWorkerProcess(
  'collect',
  () => connectNats('collect-worker'),
  (nc) => {
    const handle = createCollectHandler(cfg, ch, async () => nc);
    // Events carry their rows in the ce-rows header: a batch's, or the batches' of a pending pass.
    const rowsOf = (m: JsMsg) => Number(m.headers?.get('ce-rows')) || 0;
    const ingestBusy = consumerActivity(nc, STREAMS.uploads, CONSUMERS.ingest);
    const fromIngest = (m: JsMsg) => m.headers?.get('ce-source') === EVENT_SOURCES.ingest;
    return [
      {
        stream: STREAMS.telemetry,
        consumer: CONSUMERS.collect,
        cfg,
        maxMessages: cfg.COLLECT_MAX_MESSAGES,
        maxBytes: cfg.COLLECT_MAX_BYTES,
        // A handled batch is about one INSERT: it ends at COLLECT_MAX_ROWS rows.
        batchWeight: { of: rowsOf, max: cfg.COLLECT_MAX_ROWS },
        maxWaitMs: cfg.COLLECT_MAX_WAIT_MS,
        // A batch of upload batches stops waiting once ingest has nothing left: the end of an
        // upload goes to ClickHouse at once, not after COLLECT_MAX_WAIT_MS. Remote-write batches
        // (no producer to ask) wait as before, so a live fleet's scrapes still share INSERTs.
        moreMayCome: (batch) => !batch.every(fromIngest) || ingestBusy(),
        // Batch bodies go to ClickHouse as they are: no text decode, no copy.
        rawData: true,
        concurrency: cfg.COLLECT_CONCURRENCY,
        handle,
        ready: () => clickhouseReadiness(ch),
      },
      {
        stream: STREAMS.rollups,
        consumer: CONSUMERS.rollups,
        cfg,
        maxMessages: cfg.COLLECT_ROLLUP_MAX_EVENTS,
        batchWeight: { of: rowsOf, max: cfg.COLLECT_ROLLUP_MAX_ROWS },
        maxWaitMs: cfg.COLLECT_ROLLUP_MAX_WAIT_MS,
        // Pass events come from this process's inserts: once it holds no batch, a pass does not
        // wait for more (at the end of an upload, no idle wait before the last pass).
        moreFrom: CONSUMERS.collect,
        rawData: true,
        concurrency: 1,
        handle,
      },
    ];
  },
  () => ch.close(),
);
