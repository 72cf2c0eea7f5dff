import type { ClickHouseClient } from '@clickhouse/client';
import { inTouchedBuckets, touchedBucketsCte, touchedSliceBoundsSql } from './batch-keys.ts';
import { LATEST_COPY_FIRST } from './migrations.ts';
import { CLICKHOUSE_TABLES as T, ROLLUP_LEVELS } from './names.ts';

// Rollup maintenance, used by collect (after each fetch it stored) and by provisioning (a one-off
// backfill of samples stored before the rollups existed). A recompute rebuilds whole buckets, one
// INSERT … SELECT per level:
//   rollup_1m from de-duplicated samples (per identity the row with the greatest
//   (received_at, batch_id, line): the later upload wins), rollup_1h from rollup_1m FINAL,
//   rollup_1d from rollup_1h FINAL.
// Collect's scope is the buckets its batches touched (shared/batch-keys.ts), so no step scans
// samples beyond the touched (uuid, minute) keys and time range; a pass touching many keys runs
// in slices of GPUs, contiguous uuid ranges, two at once (recomputeRollups). A recompute writes a
// new version of each bucket (ReplacingMergeTree(updated_at = now64() at query start)): of two
// concurrent recomputes of one bucket, the one that started later saw every insert committed
// before it and wins, so the result is exact whatever the interleaving.

const COLUMNS = 'uuid, metric_name, t, count, min, max, sum, last, last_ts, updated_at';

/**
 * Which buckets a statement rebuilds: those the batches `{ids}` touched by the GPUs in one uuid
 * range [`{lo}`, `{hi}`), or every bucket of the GPUs in one of `{chunks}` uuid-hash slices
 * (`{chunk}`), which bounds a backfill's memory.
 */
export type RollupScope = 'batches' | 'chunk';

/** A table name, qualified by `database` when the client has another default (provisioning). */
const named = (table: string, database?: string) => (database ? `${database}.${table}` : table);

/** Restricts a source table to the scope. */
function inScope(scope: RollupScope, time: string, seconds: number): string {
  return scope === 'chunk' ? 'cityHash64(uuid) % {chunks:UInt32} = {chunk:UInt32}' : inTouchedBuckets(time, seconds);
}

/** rollup_1m for the scope's minutes, from samples with duplicates collapsed. */
export function minuteRollupSql(scope: RollupScope = 'batches', database?: string): string {
  const { table, seconds } = ROLLUP_LEVELS[0];
  return `INSERT INTO ${named(table, database)} (${COLUMNS})
    ${scope === 'batches' ? `WITH ${touchedBucketsCte(seconds, 'ids', true)}` : ''}
    SELECT uuid, metric_name, toStartOfInterval(ts, INTERVAL ${seconds} SECOND) AS bucket,
      count(), min(v), max(v), sum(v), argMax(v, ts), max(ts), now64(3)
    FROM (
      -- The winning copy of each sample (measured cheaper here than argMax per column), sorted in
      -- samples' key order (uuid, timestamp, metric_name) so ClickHouse merges the parts' sorted
      -- streams and sorts only copies of one sample: 3–15 % less CPU for this statement with 6
      -- samples per series-minute, no measurable change with one (scratch driver, 10 × 100,000-
      -- sample batches, two alternating pairs).
      SELECT uuid, metric_name, timestamp AS ts, value AS v
      FROM ${named(T.samples, database)}
      WHERE ${inScope(scope, 'timestamp', seconds)}
      ORDER BY uuid, timestamp, metric_name, ${LATEST_COPY_FIRST}
      LIMIT 1 BY uuid, timestamp, metric_name
    )
    GROUP BY uuid, metric_name, bucket`;
}

/** A coarser level from the level below it (FINAL: the latest version of each finer bucket). */
export function coarserRollupSql(level: number, scope: RollupScope = 'batches', database?: string): string {
  const { table, seconds } = ROLLUP_LEVELS[level];
  const below = named(ROLLUP_LEVELS[level - 1].table, database);
  return `INSERT INTO ${named(table, database)} (${COLUMNS})
    ${scope === 'batches' ? `WITH ${touchedBucketsCte(seconds, 'ids', true)}` : ''}
    SELECT uuid, metric_name, toStartOfInterval(t, INTERVAL ${seconds} SECOND) AS bucket,
      sum(count), min(min), max(max), sum(sum), argMax(last, last_ts), max(last_ts), now64(3)
    FROM ${below} FINAL
    WHERE ${inScope(scope, 't', seconds)}
    GROUP BY uuid, metric_name, bucket`;
}

/**
 * A recompute's rows have unique keys (GROUP BY), so ReplacingMergeTree's collapse of the insert
 * block finds nothing to collapse: skipping it measured 18–23 % less ClickHouse CPU per rollup
 * row (scratch driver, 10 × 100,000-sample batches, two alternating pairs). Readers use FINAL.
 */
export const ROLLUP_INSERT_SETTINGS = {
  optimize_on_insert: 0,
  // The rollups are partitioned by bucket time: a batch of a long historical file touches one
  // partition per day, which must not fail the recompute (the default limit is 100).
  max_partitions_per_insert_block: '0',
  // Not optimize_move_to_prewhere_if_final (which the API's reads use): here it made the 1 h and
  // 1 d recomputes cost 10–25 % more (npm run bench:rollups, two alternated pairs).
} as const;

/** One INSERT … SELECT per level, finest first (run in this order: each reads the level below). */
export const levelStatements = (scope: RollupScope, database?: string) => [
  minuteRollupSql(scope, database),
  ...ROLLUP_LEVELS.slice(1).map((_, i) => coarserRollupSql(i + 1, scope, database)),
];

/**
 * (uuid, minute) keys one recompute statement covers at most (≈ 10 samples each for DCGM's 10
 * metrics per scrape). Per sample, a recompute costs more as its GROUP BY grows: `npm run
 * bench:rollups` (2026-11-23), GPUs with one sample per metric (`fleets`), three levels, ClickHouse
 * µs per sample: 6.6 for 100,000-sample statements, 7.6 for 200,000, 8.7 for 500,000 and 9.2 for
 * 1,000,000. A pass of ten such batches (`--coalesce 10`), three alternated pairs: 10.2, 10.9,
 * 12.1 in one statement per level against 7.7, 9.6, 8.7 in slices of this size. Slicing by GPU
 * keeps what a pass over many fetches saves on live data (a slice still reads each GPU's minutes
 * and hours once for all of the pass's fetches: `series` 1.6–1.7 µs per sample either way).
 */
export const ROLLUP_KEYS_PER_STATEMENT = 32_768;

/** The fewest (uuid, minute) keys a pass is split for concurrency at (below, one statement costs less than two). */
export const MIN_SLICE_KEYS = 4096;

/**
 * The uuid ranges a recompute of `batchIds` runs in, as the query parameters `lo` and `hi` of
 * its statements (in uuid order; empty when the batches touched nothing): about equal, of at most
 * `keysPerStatement` keys, and at least `parts` of them (to run at once) while each holds at least
 * `minKeys`. Equal, since two slices of one pass run at once: a 32,768-key slice beside one of
 * 9,000 left the larger running alone for most of the pass.
 *
 * `rows`, the samples the batches stored, bounds the (uuid, minute) keys they touched: a pass
 * whose bound already means one slice (live data: a scrape or two per pass) gets the whole uuid
 * range without the query for the bounds, ≈ 15 % of the recompute's ClickHouse CPU on passes of
 * one 2,470-sample scrape (npm run bench:rollups -- --rows 2470 --batches 60).
 */
export async function rollupSlices(
  ch: ClickHouseClient,
  batchIds: string[],
  keysPerStatement = ROLLUP_KEYS_PER_STATEMENT,
  parts = 1,
  minKeys = MIN_SLICE_KEYS,
  rows?: number,
): Promise<{ lo: string; hi: string }[]> {
  // One slice covers every key of the batches whatever `rows` says, so a wrong bound costs at most
  // a larger statement, never a bucket left out.
  if (rows !== undefined && rows > 0 && rows <= keysPerStatement && (parts <= 1 || rows < 2 * Math.max(1, minKeys))) {
    return [{ lo: '', hi: '' }];
  }
  const rs = await ch.query({
    query: touchedSliceBoundsSql('ids'),
    query_params: { ids: batchIds, per: keysPerStatement, parts, min: Math.max(1, minKeys) },
    format: 'JSONEachRow',
  });
  const bounds = (await rs.json<{ lo: string }>()).map((r) => r.lo);
  return bounds.map((lo, i) => ({ lo, hi: bounds[i + 1] ?? '' }));
}

/**
 * Slices of one pass recomputed at once. One recompute statement kept ClickHouse at 1–1.5 cores
 * of 2, and after the last insert of an upload only the rollups are left: `npm run bench:engine`,
 * three alternated pairs, the last recompute ended 6.46, 4.94, 6.24 s after the last samples
 * INSERT with one slice at a time against 3.95, 3.12, 4.23 with two (upload stored in 16.7, 16.2,
 * 17.4 against 15.1, 15.6, 14.6 s). A pass is cut into at least this many equal slices while each
 * keeps MIN_SLICE_KEYS keys; a smaller one (live data: a scrape of a few hundred GPUs) runs as one.
 */
export const ROLLUP_SLICE_CONCURRENCY = 2;

/**
 * Recomputes every rollup bucket the given (stored) batches touched, finest level first, in
 * slices of GPUs (contiguous uuid ranges) of about `keysPerStatement` (uuid, minute) keys: every
 * level of a slice before the next (a slice holds whole GPUs, so each bucket is rebuilt from all
 * its rows), up to `concurrency` slices at once (their buckets are disjoint). Ranges, not hash
 * slices: a hash slice's GPUs are spread over the whole key range, so each statement read nearly
 * every granule again (measured: slower than no slicing). `rows`: the samples the batches stored,
 * when known (see rollupSlices).
 */
export async function recomputeRollups(
  ch: ClickHouseClient,
  batchIds: string[],
  keysPerStatement = ROLLUP_KEYS_PER_STATEMENT,
  concurrency = ROLLUP_SLICE_CONCURRENCY,
  rows?: number,
): Promise<void> {
  if (batchIds.length === 0) return;
  const slices = await rollupSlices(ch, batchIds, keysPerStatement, concurrency, MIN_SLICE_KEYS, rows);
  const recomputeNext = async (): Promise<void> => {
    for (let slice = slices.shift(); slice; slice = slices.shift()) {
      for (const query of levelStatements('batches')) {
        await ch.command({ query, query_params: { ids: batchIds, ...slice }, clickhouse_settings: ROLLUP_INSERT_SETTINGS });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, slices.length)) }, recomputeNext));
}

/** Samples per backfill statement (its GROUP BY and sort hold about this many rows). */
const BACKFILL_CHUNK_SAMPLES = 20_000_000;

/**
 * Rebuilds every rollup bucket from all stored samples, a uuid-hash slice at a time (all levels
 * of a slice before the next: a slice holds whole GPUs). Idempotent; safe while collect runs
 * (the later recompute of a bucket wins, as above). Returns the samples read.
 */
export async function backfillRollups(ch: ClickHouseClient, database: string): Promise<number> {
  const rs = await ch.query({ query: `SELECT count() AS n FROM ${named(T.samples, database)}`, format: 'JSONEachRow' });
  const samples = Number((await rs.json<{ n: string }>())[0].n);
  if (samples === 0) return 0;
  const chunks = Math.ceil(samples / BACKFILL_CHUNK_SAMPLES);
  for (let chunk = 0; chunk < chunks; chunk++) {
    for (const query of levelStatements('chunk', database)) {
      await ch.command({ query, query_params: { chunks, chunk }, clickhouse_settings: ROLLUP_INSERT_SETTINGS });
    }
  }
  return samples;
}
