import * as functions from '@google-cloud/functions-framework';
import type { ClickHouseClient } from '@clickhouse/client';
import type { CloudEventV1 } from 'cloudevents';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { NatsConnection } from 'nats';
import { parseEnv } from '../../shared/config.ts';
import { clickhouseClient } from '../../shared/clickhouse.ts';
import { Counter } from 'prom-client';
import { loggerFor } from '../../shared/log.ts';
import { registry, rowsCounter } from '../../shared/metrics.ts';
import { SAMPLE_INSERT_COLUMNS } from '../../shared/migrations.ts';
import { BUCKETS, CLICKHOUSE_TABLES, EVENT_TYPES, SUBJECTS } from '../../shared/names.ts';
import { BATCH_CLICKHOUSE_FORMAT, BATCH_CONTENT_ENCODING, BATCH_CONTENT_TYPE, BATCH_ID, GZIP_BATCH_CONTENT_TYPE } from '../../shared/sample-batch.ts';
import { startsAs } from '../../shared/content-encoding.ts';
import { sharedNats } from '../../shared/nats.ts';
import type { StoredAnnouncement } from '../../shared/schemas.ts';
import { PermanentError, isTransient, type BatchOutcome } from '../../shared/worker.ts';
import { InsertClaims } from './claims.ts';
import { collectEnv, type CollectConfig } from './config.ts';
import { recomputeRollups } from '../../shared/rollups.ts';
import { pendingBatches, queuePass, type StoredBatch } from './pending.ts';

// collect (CloudEvent batch): inserts sample batches into ClickHouse, one INSERT per group of up
// to COLLECT_MAX_ROWS rows, and reports them stored only after ClickHouse confirms.
// No duplicates on redelivery, by three mechanisms:
// 1. the INSERT carries insert_deduplication_token = hash of its batch ids, so the same group
//    sent twice is stored once (views included);
// 2. before inserting, batch ids already present in collected_batches (filled by a view in the
//    same INSERT) are skipped, which also covers a batch redelivered in a different group or
//    republished after the stream's duplicate window;
// 3. a batch another loop of this process is inserting right now is not inserted again
//    (claims.ts: after a NATS crash copies arrive concurrently, before 2. can see them).
// Then a rollup pass for the stored batches is queued on ROLLUPS (pending.ts) before the ack; the
// same handler runs those passes (events of type rollups.pending, from collect's second consumer):
// it recomputes the rollup buckets the batches touched (rollups.ts), then puts their progress,
// which is what makes an upload `done`. When the event cannot be queued (ROLLUPS full, or not
// provisioned yet), the pass runs at once, inline, as before the queue existed.
// An INSERT is a single block (no parallel parsing; the Native blocks of its batches squashed into
// one by min_insert_block_size_rows) into an unpartitioned table, so each group is stored entirely
// or not at all: a batch id present means all its rows are (test/collect.test.ts checks one part
// per insert). Batch bodies go to ClickHouse exactly as they crossed JetStream (zstd frames
// concatenate), so collect neither decompresses nor decodes them.

/** How a batch body is inserted, by its CloudEvent datacontenttype. */
interface BatchFormat {
  format: string;
  encoding?: string;
}
const FORMATS: Record<string, BatchFormat> = {
  [BATCH_CONTENT_TYPE]: { format: BATCH_CLICKHOUSE_FORMAT, encoding: BATCH_CONTENT_ENCODING },
  // gzip Native batches, from producers before zstd, during an upgrade.
  [GZIP_BATCH_CONTENT_TYPE]: { format: BATCH_CLICKHOUSE_FORMAT, encoding: 'gzip' },
  // Batches written before the Native format may still be in the stream during an upgrade.
  'text/tab-separated-values': { format: 'TabSeparated' },
};

interface Batch {
  index: number;
  id: string;
  rows: number;
  body: Buffer;
  kind: BatchFormat;
}

const MAX_BATCH_ROWS = 1_000_000;
const log = loggerFor('collect');
const passesCounter = new Counter({
  name: 'gputel_collect_rollup_passes_total',
  help: 'Rollup passes of stored batch groups, by mode: queued on ROLLUPS, or run inline because the event could not be queued',
  labelNames: ['mode'],
  registers: [registry],
});

function toBatch(event: CloudEventV1<unknown>, index: number): Batch | string {
  if (event.type !== EVENT_TYPES.samples) return `unexpected event type ${event.type}`;
  if (!BATCH_ID.test(event.id)) return `batch id ${event.id} is not <upload>.<part>.<seq>`;
  const kind = FORMATS[event.datacontenttype ?? ''];
  if (!kind) return `unsupported batch content type ${String(event.datacontenttype).slice(0, 100)} (expected ${BATCH_CONTENT_TYPE})`;
  const data = event.data;
  const body = data instanceof Uint8Array ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : typeof data === 'string' && !kind.encoding ? Buffer.from(data, 'utf8') : undefined;
  if (!body || body.length === 0) return 'sample batch has no payload';
  let rows = 0;
  if (kind.encoding) {
    // Rows come from the event (the body is compressed); ClickHouse checks the body itself.
    const attr = (event as { rows?: unknown }).rows;
    rows = typeof attr === 'string' && /^\d{1,7}$/.test(attr) ? Number(attr) : 0;
    if (rows < 1 || rows > MAX_BATCH_ROWS) return `sample batch has no valid rows attribute (1 to ${MAX_BATCH_ROWS})`;
    if (!startsAs(body, kind.encoding)) return `sample batch is not ${kind.encoding}-compressed`;
  } else {
    for (let i = body.indexOf(10); i !== -1; i = body.indexOf(10, i + 1)) rows++;
    if (rows === 0) return 'sample batch is empty';
  }
  return { index, id: event.id, rows, body, kind };
}

/** Groups of consecutive batches with at most maxRows rows each (a larger batch goes alone). */
export function groupBatches<T extends { rows: number }>(batches: T[], maxRows: number): T[][] {
  const groups: T[][] = [];
  let current: T[] = [];
  let rows = 0;
  for (const b of batches) {
    if (current.length && rows + b.rows > maxRows) {
      groups.push(current);
      current = [];
      rows = 0;
    }
    current.push(b);
    rows += b.rows;
  }
  if (current.length) groups.push(current);
  return groups;
}

/** Rows an INSERT may hold in one block (COLLECT_MAX_ROWS is at most 1,000,000). */
const MAX_INSERT_BLOCK_ROWS = 1_048_576;

export function dedupToken(ids: string[]): string {
  return createHash('sha256').update([...ids].sort().join('\n')).digest('hex');
}

export function createCollectHandler(cfg: CollectConfig, ch: ClickHouseClient, getNats: () => Promise<NatsConnection>) {
  async function storedIds(ids: string[]): Promise<Set<string>> {
    const rs = await ch.query({
      query: `SELECT DISTINCT batch_id FROM ${CLICKHOUSE_TABLES.batches} WHERE batch_id IN {ids:Array(String)}`,
      query_params: { ids },
      format: 'JSONEachRow',
    });
    return new Set((await rs.json<{ batch_id: string }>()).map((r) => r.batch_id));
  }

  async function insert(group: Batch[]): Promise<void> {
    const rows = group.reduce((n, b) => n + b.rows, 0);
    const { format, encoding } = group[0].kind;
    const result = await ch.exec({
      query: `INSERT INTO ${CLICKHOUSE_TABLES.samples} (${SAMPLE_INSERT_COLUMNS.join(', ')}) FORMAT ${format}`,
      values: Readable.from(group.map((b) => b.body), { objectMode: false }),
      http_headers: encoding ? { 'Content-Encoding': encoding } : undefined,
      clickhouse_settings: {
        insert_deduplication_token: dedupToken(group.map((b) => b.id)),
        insert_deduplicate: 1,
        deduplicate_blocks_in_dependent_materialized_views: 1,
        // One block, hence one part: parallel parsing would cut a text body into ~10 MiB pieces
        // that become separate parts (seen: 4 parts for a 42 MB insert), and the Native blocks
        // of the batches are squashed into one until this many rows (more than a group has).
        input_format_parallel_parsing: 0,
        max_insert_block_size: String(MAX_INSERT_BLOCK_ROWS),
        min_insert_block_size_rows: String(MAX_INSERT_BLOCK_ROWS),
        min_insert_block_size_bytes: '0',
        // The views write one row per key of their GROUP BY, so the collapse ClickHouse would run
        // on each view's block before writing it (ReplacingMergeTree, AggregatingMergeTree) finds
        // nothing: skipping it cut the INSERT's CPU 4.91, 4.87 → 4.20, 4.35 µs/row (`npm run
        // bench:engine`, alternated). samples itself is a plain MergeTree (nothing to collapse).
        optimize_on_insert: 0,
      },
    });
    // The answer of an INSERT is empty; reading it to the end releases the connection.
    for await (const _ of result.stream) void _;
    rowsCounter.inc({ stage: 'collect', outcome: 'stored' }, rows);
  }

  /** Inserts `fresh`, adding what ClickHouse refuses to `poison` and what it stored to `stored`. */
  async function insertAll(fresh: Batch[], poison: { index: number; reason: string }[], stored: string[]): Promise<void> {
    const kinds = [...new Set(fresh.map((b) => b.kind))];
    for (const group of kinds.flatMap((kind) => groupBatches(fresh.filter((b) => b.kind === kind), cfg.COLLECT_MAX_ROWS))) {
      try {
        await insert(group);
        stored.push(...group.map((b) => b.id));
      } catch (e) {
        // An outage fails the whole fetch (retried); a rejected INSERT is narrowed down to the
        // batches ClickHouse refuses, so one bad batch does not dead-letter its neighbours.
        if (isTransient(e) || group.length === 1) throw e;
        for (const b of group) {
          try {
            await insert([b]);
            stored.push(b.id);
          } catch (one) {
            if (isTransient(one)) throw one;
            poison.push({ index: b.index, reason: `ClickHouse rejected batch ${b.id}: ${one instanceof Error ? one.message : one}` });
          }
        }
      }
    }
  }

  const claims = new InsertClaims();

  /**
   * Tells live readers (query's SSE relay) which batches are now in ClickHouse. After the
   * INSERT ClickHouse confirmed, best effort and fire-and-forget: the exactly-once path (ledger,
   * ack) never waits for or depends on it.
   */
  async function announce(stored: string[], rows: number): Promise<void> {
    if (stored.length === 0) return;
    try {
      const note: StoredAnnouncement = { batches: stored, rows };
      (await getNats()).publish(SUBJECTS.stored, JSON.stringify(note));
    } catch {
      // A live view missing a batch is acceptable; storage is not affected.
    }
  }

  /**
   * A rollup pass: recomputes every bucket the batches touched (also for batches stored before: a
   * crash between their insert and their pass is repaired by the redelivery; recomputing is
   * idempotent), then records their progress for the upload status.
   */
  async function runPass(batches: StoredBatch[]): Promise<void> {
    const rows = new Map(batches.map((b) => [b.id, b.rows]));
    let stored = 0;
    for (const n of rows.values()) stored += n;
    await recomputeRollups(ch, [...rows.keys()], cfg.COLLECT_ROLLUP_KEYS_PER_STATEMENT, cfg.COLLECT_ROLLUP_SLICE_CONCURRENCY, stored);
    // Idempotent puts: safe to repeat on redelivery.
    const kv = await (await getNats()).jetstream().views.kv(BUCKETS.progress);
    await Promise.all([...rows].map(([id, n]) => kv.put(id, String(n))));
  }

  /** Queues the pass of stored batches; runs it inline when the event cannot be queued. */
  async function passFor(batches: StoredBatch[]): Promise<void> {
    try {
      await queuePass((await getNats()).jetstream(), batches, dedupToken(batches.map((b) => b.id)));
      passesCounter.inc({ mode: 'queued' });
    } catch (e) {
      // Each inline pass holds this group's ack for its recompute: worth seeing when it persists.
      log.warn({ err: e, batches: batches.length }, 'could not queue a rollup pass on ROLLUPS; running it inline');
      await runPass(batches);
      passesCounter.inc({ mode: 'inline' });
    }
  }

  /** Inserts the batches not stored yet, then queues the pass of every one stored. */
  async function store(batches: Batch[], poison: { index: number; reason: string }[]): Promise<void> {
    const already = await storedIds(batches.map((b) => b.id));
    let todo = batches.filter((b) => !already.has(b.id));
    while (todo.length > 0) {
      const claim = claims.claim(todo);
      const stored: string[] = [];
      try {
        await insertAll(claim.mine, poison, stored);
      } finally {
        claim.finish(stored);
      }
      const storedSet = new Set(stored);
      void announce(stored, claim.mine.filter((b) => storedSet.has(b.id)).reduce((n, b) => n + b.rows, 0));
      if (claim.busy.length === 0) break;
      // Copies another loop was inserting: done once it is, ours to insert if it failed (asking
      // the ledger again: a failed request may still have been committed).
      await claim.settled;
      const now = await storedIds(claim.busy.map((b) => b.id));
      todo = claim.busy.filter((b) => !now.has(b.id));
    }
    const refused = new Set(poison.map((p) => p.index));
    // Every stored batch, including ones found already stored (their pass may not have run).
    const done = batches.filter((b) => !refused.has(b.index)).map((b) => ({ id: b.id, rows: b.rows }));
    if (done.length > 0) await passFor(done);
  }

  return async function collect(events: CloudEventV1<unknown>[]): Promise<BatchOutcome> {
    const poison: { index: number; reason: string }[] = [];
    const batches: Batch[] = [];
    const passes: StoredBatch[] = [];
    events.forEach((e, i) => {
      const pending = e.type === EVENT_TYPES.rollups ? pendingBatches(e) : undefined;
      const b = pending ?? toBatch(e, i);
      if (typeof b === 'string') poison.push({ index: i, reason: b });
      else if (Array.isArray(b)) passes.push(...b);
      else batches.push(b);
    });
    if (batches.length > 0) await store(batches, poison);
    if (passes.length > 0) await runPass(passes);
    return { poison };
  };
}

let handler: ReturnType<typeof createCollectHandler> | undefined;
/** The handler configured from the environment (Functions Framework: one event per call). */
export function collectHandler(events: CloudEventV1<unknown>[]): Promise<BatchOutcome> {
  if (!handler) {
    const cfg = parseEnv(collectEnv);
    handler = createCollectHandler(cfg, clickhouseClient(cfg), () => sharedNats('collect'));
  }
  return handler(events);
}

functions.cloudEvent('collect', async (event: CloudEventV1<unknown>) => {
  const { poison } = await collectHandler([event]);
  if (poison?.length) throw new PermanentError(poison[0].reason);
});
