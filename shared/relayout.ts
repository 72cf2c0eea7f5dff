import type { ClickHouseClient } from '@clickhouse/client';

// Moves a table to a new partition key, which ClickHouse cannot alter in place: copy it into a
// table of the new layout, EXCHANGE the two, copy again what writers added to the old one
// meanwhile, drop the old one. Writers keep running (collect recomputes rollups at any time):
// - an INSERT resolves the table name when it starts, so after the EXCHANGE new inserts write the
//   new table, and those that started before may still be writing the old one: we wait for them
//   to end before the second copy;
// - the second copy takes the rows whose version is at or after the start of the oldest query
//   running when the first copy began (every row committed later has such a version: writers
//   set it to now64() at their query's start), and a row copied twice is one row to readers
//   (ReplacingMergeTree(version), read with FINAL).
// A run killed midway is finished by the next: the old table keeps its rows under
// `<table>_relayout` until they are copied.

export interface Relayout {
  database: string;
  table: string;
  /** The partition key of the new layout, as system.tables spells it. */
  partitionKey: string;
  /** CREATE TABLE of the new layout under a given qualified name. */
  create: (name: string) => string;
  /** ReplacingMergeTree version column, DateTime64(3), set to now64() at the writer's query start. */
  version: string;
}

/** Partition keys may span many partitions (all of a table's history) in one insert. */
const COPY_SETTINGS = { max_partitions_per_insert_block: '0' };
const POLL_MS = 200;

async function one<T>(ch: ClickHouseClient, query: string, params: Record<string, unknown> = {}): Promise<T | undefined> {
  const rs = await ch.query({ query, query_params: params, format: 'JSONEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } });
  return (await rs.json<T>())[0];
}

const partitionKeyOf = async (ch: ClickHouseClient, database: string, table: string) =>
  (await one<{ key: string }>(ch, 'SELECT partition_key AS key FROM system.tables WHERE database = {db:String} AND name = {table:String}', { db: database, table }))?.key;

/** Server time (ms) minus the age of its oldest running query: no uncommitted write is older. */
const oldestRunningStartMs = async (ch: ClickHouseClient) =>
  (await one<{ ms: number }>(ch, 'SELECT toUnixTimestamp64Milli(now64(3)) - toInt64(max(elapsed) * 1000) AS ms FROM system.processes'))!.ms;

const columnsOf = async (ch: ClickHouseClient, database: string, table: string) => {
  const rs = await ch.query({
    query: 'SELECT name FROM system.columns WHERE database = {db:String} AND table = {table:String} AND default_kind NOT IN (\'ALIAS\', \'MATERIALIZED\') ORDER BY position',
    query_params: { db: database, table },
    format: 'JSONEachRow',
  });
  return (await rs.json<{ name: string }>()).map((c) => `\`${c.name}\``).join(', ');
};

const serverNowMs = async (ch: ClickHouseClient) => (await one<{ ms: number }>(ch, 'SELECT toUnixTimestamp64Milli(now64(3)) AS ms'))!.ms;

/** Waits until no INSERT naming `table` that started before `beforeMs` (server time) is running. */
async function awaitInsertsStartedBefore(ch: ClickHouseClient, table: string, beforeMs: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const running = await one<{ n: number }>(
      ch,
      `SELECT count() AS n FROM system.processes
       WHERE query_kind = 'Insert' AND positionCaseInsensitive(query, {table:String}) > 0
         AND toUnixTimestamp64Milli(now64(3)) - elapsed * 1000 < {before:Int64}`,
      { table, before: beforeMs },
    );
    if (running!.n === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`${table}: inserts that began before its move to the new layout are still running after ${timeoutMs / 1000} s; run provisioning again to finish the move`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/**
 * Gives `r.table` the partition key `r.partitionKey` if it has another. Returns what it did:
 * `unchanged` (already there), `moved`, or `finished` (an earlier, interrupted move).
 */
export async function relayoutTable(ch: ClickHouseClient, r: Relayout, opts: { waitMs?: number } = {}): Promise<'unchanged' | 'moved' | 'finished'> {
  const waitMs = opts.waitMs ?? 600_000;
  const main = `${r.database}.${r.table}`;
  const sideName = `${r.table}_relayout`;
  const side = `${r.database}.${sideName}`;
  const key = await partitionKeyOf(ch, r.database, r.table);
  const leftOver = (await partitionKeyOf(ch, r.database, sideName)) !== undefined;
  if (key === r.partitionKey) {
    if (!leftOver) return 'unchanged';
    // An earlier move stopped after its EXCHANGE: the old rows may not all have been copied back.
    await awaitInsertsStartedBefore(ch, r.table, await serverNowMs(ch), waitMs);
    const cols = await columnsOf(ch, r.database, r.table);
    await ch.command({ query: `INSERT INTO ${main} (${cols}) SELECT ${cols} FROM ${side}`, clickhouse_settings: COPY_SETTINGS });
    await ch.command({ query: `DROP TABLE ${side} SYNC` });
    return 'finished';
  }
  // An earlier move stopped before its EXCHANGE: its copy is incomplete; start again.
  if (leftOver) await ch.command({ query: `DROP TABLE ${side} SYNC` });
  await ch.command({ query: r.create(side) });
  const cols = await columnsOf(ch, r.database, sideName);
  const sinceMs = await oldestRunningStartMs(ch);
  await ch.command({ query: `INSERT INTO ${side} (${cols}) SELECT ${cols} FROM ${main}`, clickhouse_settings: COPY_SETTINGS });
  await ch.command({ query: `EXCHANGE TABLES ${main} AND ${side}` });
  await awaitInsertsStartedBefore(ch, r.table, await serverNowMs(ch), waitMs);
  await ch.command({
    query: `INSERT INTO ${main} (${cols}) SELECT ${cols} FROM ${side} WHERE toUnixTimestamp64Milli(${r.version}) >= {since:Int64}`,
    query_params: { since: sinceMs },
    clickhouse_settings: COPY_SETTINGS,
  });
  await ch.command({ query: `DROP TABLE ${side} SYNC` });
  return 'moved';
}
