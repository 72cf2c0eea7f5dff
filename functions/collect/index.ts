import * as functions from '@google-cloud/functions-framework';
import type { ClickHouseClient } from '@clickhouse/client';
import type { CloudEventV1 } from 'cloudevents';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { NatsConnection } from 'nats';
import { parseEnv } from '../../shared/config.ts';
import { clickhouseClient } from '../../shared/clickhouse.ts';
import { rowsCounter } from '../../shared/metrics.ts';
import { SAMPLE_INSERT_COLUMNS } from '../../shared/migrations.ts';
import { BUCKETS, CLICKHOUSE_TABLES, EVENT_TYPES } from '../../shared/names.ts';
import { sharedNats } from '../../shared/nats.ts';
import { PermanentError, isTransient, type BatchOutcome } from '../../shared/worker.ts';
import { collectEnv, type CollectConfig } from './config.ts';

// collect (CloudEvent batch): inserts sample batches into ClickHouse, one INSERT per group of up
// to COLLECT_MAX_ROWS rows, and reports them stored only after ClickHouse confirms.
// No duplicates on redelivery, by two mechanisms:
// 1. the INSERT carries insert_deduplication_token = hash of its batch ids, so the same group
//    sent twice is stored once (views included);
// 2. before inserting, batch ids already present in collected_batches (filled by a view in the
//    same INSERT) are skipped, which also covers a batch redelivered in a different group or
//    republished after the stream's duplicate window.
// An INSERT is a single block (no parallel parsing, max_insert_block_size ≥ its rows) into an
// unpartitioned table, so each group is stored entirely or not at all: a batch id present means
// all its rows are (test/collect.test.ts checks one part per insert).

interface Batch {
  index: number;
  id: string;
  rows: number;
  body: Buffer;
}

function toBatch(event: CloudEventV1<unknown>, index: number, raw?: Uint8Array): Batch | string {
  if (event.type !== EVENT_TYPES.samples) return `unexpected event type ${event.type}`;
  // The worker passes the message bytes, which saves re-encoding the decoded text.
  const body = raw
    ? Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)
    : typeof event.data === 'string' ? Buffer.from(event.data, 'utf8') : Buffer.isBuffer(event.data) ? event.data : undefined;
  if (!body) return 'sample batch has no TabSeparated payload';
  if (!/^[\w-]+\.\d+\.\d+$/.test(event.id)) return `batch id ${event.id} is not <upload>.<part>.<seq>`;
  let rows = 0;
  for (let i = body.indexOf(10); i !== -1; i = body.indexOf(10, i + 1)) rows++;
  if (rows === 0) return 'sample batch is empty';
  return { index, id: event.id, rows, body };
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
    await ch.insert({
      table: CLICKHOUSE_TABLES.samples,
      columns: [...SAMPLE_INSERT_COLUMNS],
      format: 'TabSeparated',
      values: Readable.from(group.map((b) => b.body), { objectMode: false }),
      clickhouse_settings: {
        insert_deduplication_token: dedupToken(group.map((b) => b.id)),
        insert_deduplicate: 1,
        deduplicate_blocks_in_dependent_materialized_views: 1,
        // One block, hence one part: parallel parsing would cut the body into ~10 MiB pieces
        // that become separate parts (seen: 4 parts for a 42 MB insert).
        input_format_parallel_parsing: 0,
        max_insert_block_size: '1048576',
        min_insert_block_size_rows: '0',
        min_insert_block_size_bytes: '0',
      },
    });
    rowsCounter.inc({ stage: 'collect', outcome: 'stored' }, rows);
  }

  return async function collect(events: CloudEventV1<unknown>[], msgs?: { data: Uint8Array }[]): Promise<BatchOutcome> {
    const poison: { index: number; reason: string }[] = [];
    const batches: Batch[] = [];
    events.forEach((e, i) => {
      const b = toBatch(e, i, msgs?.[i]?.data);
      if (typeof b === 'string') poison.push({ index: i, reason: b });
      else batches.push(b);
    });
    if (batches.length === 0) return { poison };
    const already = await storedIds(batches.map((b) => b.id));
    const fresh = batches.filter((b) => !already.has(b.id));
    for (const group of groupBatches(fresh, cfg.COLLECT_MAX_ROWS)) {
      try {
        await insert(group);
      } catch (e) {
        // An outage fails the whole fetch (retried); a rejected INSERT is narrowed down to the
        // batches ClickHouse refuses, so one bad batch does not dead-letter its neighbours.
        if (isTransient(e) || group.length === 1) throw e;
        for (const b of group) {
          try {
            await insert([b]);
          } catch (one) {
            if (isTransient(one)) throw one;
            poison.push({ index: b.index, reason: `ClickHouse rejected batch ${b.id}: ${one instanceof Error ? one.message : one}` });
          }
        }
      }
    }
    // Progress for the upload status (idempotent puts: safe to repeat on redelivery).
    const refused = new Set(poison.map((p) => p.index));
    const kv = await (await getNats()).jetstream().views.kv(BUCKETS.progress);
    await Promise.all(batches.filter((b) => !refused.has(b.index)).map((b) => kv.put(b.id, String(b.rows))));
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
