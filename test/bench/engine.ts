// npm run bench:engine [-- --rows N --shape fleets|series --statements]
// Where ClickHouse's CPU goes during one pipeline run (the `(b)` of `npm run bench`, same file,
// same stack): the engine keeps its query, view and part logs (test/support/servers.ts), and this
// prints, per kind of work, CPU seconds and µs per file row: the samples INSERTs (and, within
// them, each materialized view), each rollup level's recompute, the smaller queries, and the
// background merges per table. The logs cost the engine some CPU of their own, so the totals
// run a little above `npm run bench`'s; compare kinds within one run. `--statements` also lists
// every samples INSERT and rollup statement in start order (start and duration in seconds from
// the upload's first byte, CPU, rows read and written): when each rollup pass ran, and what it read.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { uploadFile } from '../../functions/upload/cli.ts';
import { CLICKHOUSE_TABLES, ROLLUP_LEVELS } from '../../shared/names.ts';
import { repoRoot, startStack } from '../local/stack.ts';
import { generateCsv } from './generate.ts';
import { cpuSeconds } from './proc.ts';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    shape: { type: 'string', default: 'fleets' },
    statements: { type: 'boolean', default: false },
  },
});

/** The kind of work a logged statement is, from its text (the statements collect and upload send). */
function kindOf(query: string): string {
  const q = query.replace(/\s+/g, ' ');
  if (q.startsWith(`INSERT INTO ${CLICKHOUSE_TABLES.samples} `)) return 'samples INSERT (views included)';
  const level = ROLLUP_LEVELS.find((l) => q.startsWith(`INSERT INTO ${l.table} `));
  if (level) return `rollup recompute, ${level.table}`;
  if (q.includes(' OVER (ORDER BY uuid')) return 'rollup slice bounds';
  if (q.includes(`FROM ${CLICKHOUSE_TABLES.batches} `)) return 'batch ledger lookups';
  return 'other (provisioning, status)';
}

interface Row {
  [key: string]: string | number;
}

async function rows(ch: ClickHouseClient, query: string, params: Record<string, unknown> = {}): Promise<Row[]> {
  return (await ch.query({ query, query_params: params, format: 'JSONEachRow' })).json<Row>();
}

const CPU = "(ProfileEvents['UserTimeMicroseconds'] + ProfileEvents['SystemTimeMicroseconds']) / 1e6";

function table(title: string, header: string[], lines: (string | number)[][]): void {
  console.log(`\n${title}`);
  console.log(`| ${header.join(' | ')} |\n|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`);
  for (const l of lines) console.log(`| ${l.join(' | ')} |`);
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'gputel-engine-'));
  const csv = join(work, 'dcgm-large.csv');
  const shape = values.shape === 'series' ? 'series' : 'fleets';
  const { rows: fileRows } = await generateCsv(join(repoRoot, 'test/fixtures/dcgm_metrics_20250718_134233.csv'), csv, Number(values.rows), shape);
  const stack = await startStack({ dataDir: join(work, 'data'), useBundles: true, ingestWorkers: 2, collectWorkers: 1, httpFunctions: ['upload'], clickhouseLogs: true });
  const ch = createClient({ url: stack.clickhouse.url, request_timeout: 600_000 });
  try {
    const pid = stack.clickhouse.process.pid;
    const since = (await rows(ch, 'SELECT toString(now64(6)) AS t'))[0].t;
    const cpu0 = cpuSeconds(pid);
    const t0 = Date.now();
    const status = await uploadFile(csv, { url: stack.uploadUrl, wait: true, pollMs: 200, out: { isTTY: false, write: () => true } as unknown as NodeJS.WriteStream });
    const engineCpu = cpuSeconds(pid) - cpu0;
    if (status.state !== 'done') throw new Error(`the upload ended ${status.state}`);
    console.log(`${fileRows.toLocaleString('en-US')} rows (${shape}) stored in ${((Date.now() - t0) / 1000).toFixed(1)} s; ClickHouse process CPU ${engineCpu.toFixed(1)} s (${((engineCpu * 1e6) / fileRows).toFixed(2)} µs/row)`);
    await ch.command({ query: 'SYSTEM FLUSH LOGS' });
    const us = (sec: number) => ((sec * 1e6) / fileRows).toFixed(2);

    const statements = await rows(
      ch,
      `SELECT any(query) AS sample_query, count() AS n, sum(${CPU}) AS cpu, sum(read_rows) AS read, sum(written_rows) AS written
       FROM system.query_log WHERE type = 'QueryFinish' AND event_time_microseconds >= {since:DateTime64(6)} AND query NOT LIKE '%system.%'
       GROUP BY normalized_query_hash`,
      { since },
    );
    const kinds = new Map<string, { n: number; cpu: number; read: number; written: number }>();
    for (const s of statements) {
      const k = kindOf(String(s.sample_query));
      const acc = kinds.get(k) ?? { n: 0, cpu: 0, read: 0, written: 0 };
      acc.n += Number(s.n);
      acc.cpu += Number(s.cpu);
      acc.read += Number(s.read);
      acc.written += Number(s.written);
      kinds.set(k, acc);
    }
    const sorted = [...kinds].sort((a, b) => b[1].cpu - a[1].cpu);
    table(
      'Statements (CPU of their threads):',
      ['work', 'statements', 'CPU s', 'µs/row', 'rows read per row', 'rows written per row'],
      sorted.map(([k, v]) => [k, v.n, v.cpu.toFixed(2), us(v.cpu), (v.read / fileRows).toFixed(2), (v.written / fileRows).toFixed(2)]),
    );

    const views = await rows(
      ch,
      `SELECT view_name AS view, count() AS n, sum(${CPU}) AS cpu, sum(written_rows) AS written
       FROM system.query_views_log WHERE event_time_microseconds >= {since:DateTime64(6)} GROUP BY view_name ORDER BY cpu DESC`,
      { since },
    );
    table(
      'Materialized views, within the samples INSERTs:',
      ['view', 'runs', 'CPU s', 'µs/row', 'rows written per row'],
      views.map((v) => [String(v.view), Number(v.n), Number(v.cpu).toFixed(2), us(Number(v.cpu)), (Number(v.written) / fileRows).toFixed(3)]),
    );

    const merges = await rows(
      ch,
      `SELECT table, count() AS n, sum(rows) AS merged, sum(${CPU}) AS cpu
       FROM system.part_log WHERE event_type = 'MergeParts' AND event_time_microseconds >= {since:DateTime64(6)} AND database = 'telemetry'
       GROUP BY table ORDER BY cpu DESC`,
      { since },
    );
    table(
      'Background merges:',
      ['table', 'merges', 'CPU s', 'µs/row', 'rows merged per row'],
      merges.map((m) => [String(m.table), Number(m.n), Number(m.cpu).toFixed(2), us(Number(m.cpu)), (Number(m.merged) / fileRows).toFixed(2)]),
    );

    if (values.statements) {
      const timeline = await rows(
        ch,
        `SELECT dateDiff('microsecond', {since:DateTime64(6)}, query_start_time_microseconds) / 1e6 AS start, query_duration_ms / 1000 AS duration,
           ${CPU} AS cpu, read_rows, written_rows, query
         FROM system.query_log WHERE type = 'QueryFinish' AND event_time_microseconds >= {since:DateTime64(6)}
           AND (query LIKE 'INSERT INTO%' OR query LIKE '% OVER (ORDER BY uuid%') AND query NOT LIKE '%system.%'
         ORDER BY start`,
        { since },
      );
      table(
        'Statements in start order (s from the first byte):',
        ['start', 'duration', 'CPU s', 'rows read', 'rows written', 'work'],
        timeline.map((r) => [Number(r.start).toFixed(2), Number(r.duration).toFixed(2), Number(r.cpu).toFixed(2), Number(r.read_rows), Number(r.written_rows), kindOf(String(r.query))]),
      );
    }

    // When the last rollup statement ended after the last samples INSERT: the part of (b) after
    // every row is stored, when only the rollups are left (ClickHouse alone on the machine).
    const [tail] = await rows(
      ch,
      `SELECT maxIf(event_time_microseconds, query LIKE 'INSERT INTO rollup%') AS rollups_end, maxIf(event_time_microseconds, query LIKE 'INSERT INTO samples%') AS inserts_end,
         dateDiff('millisecond', inserts_end, rollups_end) / 1000 AS tail, countIf(query LIKE 'INSERT INTO rollup_1m%') AS minute_statements
       FROM system.query_log WHERE type = 'QueryFinish' AND event_time_microseconds >= {since:DateTime64(6)}`,
      { since },
    );
    console.log(`\nrollup tail: the last recompute ended ${Number(tail.tail).toFixed(2)} s after the last samples INSERT (${tail.minute_statements} statements per level)`);
    const accounted = sorted.reduce((n, [, v]) => n + v.cpu, 0) + merges.reduce((n, m) => n + Number(m.cpu), 0);
    console.log(`\naccounted for: ${accounted.toFixed(1)} of the process's ${engineCpu.toFixed(1)} CPU s (the rest: HTTP handling, logs, other background work)`);
  } finally {
    await ch.close();
    await stack.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
