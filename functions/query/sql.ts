import type { ClickHouseClient, ClickHouseSettings, ResultSet } from '@clickhouse/client';
import { retryRead } from '../../shared/clickhouse.ts';
import { LABELS_MAP, LATEST_COPY_FIRST } from '../../shared/migrations.ts';
import { CLICKHOUSE_TABLES as T } from '../../shared/names.ts';
import type { CursorKey } from './cursor.ts';

// Every query the API runs; values only ever travel as bound {name:Type} parameters. The GPU and
// metric listings read the small aggregate tables the materialized views maintain and rollup_1d,
// never samples; per-GPU reads hit samples' primary key prefix (uuid, timestamp).
// A sample's identity is (uuid, metric_name, timestamp): every read of samples collapses copies,
// keeping the row with the greatest (received_at, batch_id, line) — the later upload wins.


/**
 * `metric_name, ts, v` of one GPU's samples matching `where`, one row per sample (its winning copy).
 * ORDER BY … LIMIT 1 BY follows the primary key (uuid, timestamp, metric_name): measured 5× cheaper
 * than argMax(value, (received_at, batch_id, line)) … GROUP BY on a one-day window
 * (test/bench/collapse.ts).
 */
export const collapsedValues = (where: string) =>
  `SELECT metric_name, timestamp AS ts, value AS v FROM ${T.samples} WHERE ${where}
   ORDER BY timestamp, metric_name, ${LATEST_COPY_FIRST} LIMIT 1 BY timestamp, metric_name`;

export const SETTINGS: ClickHouseSettings = {
  // Counts as JSON numbers, not strings (all stay far below 2^53).
  output_format_json_quote_64bit_integers: 0,
  // DateTime64 as `2025-07-18T20:42:34.000Z`, independent of how the client was created.
  date_time_output_format: 'iso',
  // Lets `sum(samples) AS samples` aggregate the column rather than refer to itself.
  prefer_column_name_to_alias: 1,
  max_execution_time: 60,
  // Reads of the rollups use FINAL. With this, ClickHouse filters rows on sorting-key conditions
  // (uuid, metric_name, t) before collapsing versions instead of after; it moves no other column
  // (a bucket's versions all share their key, so the answer is the same). The fleet-wide anomaly
  // scan of a day's rollup_1m partition: 3.3–3.8 → 1.3 s of ClickHouse, one thread (10,000 GPUs).
  optimize_move_to_prewhere_if_final: 1,
};

/** A JSONEachRow read with the API's settings, and one retry on a closed connection; `read` takes the result. */
function select<R>(
  client: ClickHouseClient,
  query: string,
  params: Record<string, unknown>,
  signal: AbortSignal | undefined,
  settings: ClickHouseSettings,
  read: (result: ResultSet<'JSONEachRow'>) => Promise<R>,
): Promise<R> {
  // Reads only, so a request lost to the keep-alive race is safe to send again.
  return retryRead(async () => read(await client.query({ query, query_params: params, format: 'JSONEachRow', clickhouse_settings: settings, abort_signal: signal })), signal);
}

export function rows<T>(
  client: ClickHouseClient,
  query: string,
  params: Record<string, unknown>,
  signal?: AbortSignal,
  settings: ClickHouseSettings = SETTINGS,
): Promise<T[]> {
  return select(client, query, params, signal, settings, (result) => result.json<T>());
}

/** Runs a read with the API's settings (JSON numbers, ISO timestamps) and one retry on a closed connection. */
export const selectRows = rows;

/**
 * The rows of a read as ClickHouse wrote them: each row's JSON bytes, neither decoded nor parsed
 * (views into one buffer of the whole answer, which the caller may change in place). With one
 * retry on a closed connection.
 */
export function jsonLineBytes(client: ClickHouseClient, query: string, params: Record<string, unknown>, signal?: AbortSignal, settings = SETTINGS): Promise<Buffer[]> {
  return retryRead(async () => {
    const { stream } = await client.exec({ query: `${query}\nFORMAT JSONEachRow`, query_params: params, clickhouse_settings: settings, abort_signal: signal });
    const chunks: Buffer[] = [];
    for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
    return splitLines(Buffer.concat(chunks));
  }, signal);
}

/** `text` cut at each newline (the last line's may be missing); strings inside JSON never hold a raw one. */
export function splitLines(text: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  for (let from = 0; from < text.length; ) {
    const nl = text.indexOf(10, from);
    const end = nl < 0 ? text.length : nl;
    lines.push(text.subarray(from, end));
    from = end + 1;
  }
  return lines;
}

export async function gpuExists(client: ClickHouseClient, uuid: string, signal?: AbortSignal): Promise<boolean> {
  const found = await rows(client, `SELECT 1 AS found FROM ${T.gpus} WHERE uuid = {uuid:String} LIMIT 1`, { uuid }, signal);
  return found.length > 0;
}

export interface Window {
  uuid: string;
  /** Inclusive bounds, epoch milliseconds. */
  start?: number;
  end?: number;
  metric?: string;
}

// DateTime64(3) covers 1900-01-01 … 2299-12-31; bounds outside it select the same rows as the
// range edges, so clamping keeps the answer exact and the conversion defined.
const MIN_MS = Date.UTC(1900, 0, 1);
const MAX_MS = Date.UTC(2299, 11, 31, 23, 59, 59, 999);
export const clamp = (ms: number) => Math.min(MAX_MS, Math.max(MIN_MS, ms));

function windowFilter(w: Window): { where: string; params: Record<string, unknown> } {
  const where = ['uuid = {uuid:String}'];
  const params: Record<string, unknown> = { uuid: w.uuid };
  if (w.start !== undefined) {
    where.push(`timestamp >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')`);
    params.start = clamp(w.start);
  }
  if (w.end !== undefined) {
    where.push(`timestamp <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')`);
    params.end = clamp(w.end);
  }
  if (w.metric !== undefined) {
    where.push('metric_name = {metric:String}');
    params.metric = w.metric;
  }
  return { where: where.join(' AND '), params };
}

/** A stored sample as the API answers it (`Sample` in the OpenAPI document), in this key order. */
export interface SampleRow {
  timestamp: string;
  metric_name: string;
  value: number;
  gpu_id: string;
  device: string;
  uuid: string;
  model_name: string;
  hostname: string;
  container: string;
  pod: string;
  namespace: string;
  labels_raw: string;
  labels: Record<string, string>;
}

/** A page of samples: each sample's JSON bytes (a SampleRow), and the key of its last row when more follow. */
export interface SamplePage {
  data: Buffer[];
  next?: CursorKey;
}

// The page's rows go out as the bytes ClickHouse wrote (no parse, no re-serialisation, and no
// decode to a string and encode back: each was most of the query process's time on a 1,000-row
// page in turn). Each row is `{<SampleRow keys>,"batch_id":…,"line":…}`;
// the answer cuts that private tail. It is the last key pair: escaped strings never hold `,"` + key
// + `":` unescaped before it (a label named batch_id sits inside labels, earlier in the row), so the
// last occurrence is the column.
const ROW_HEAD = Buffer.from('{"timestamp":');
const PRIVATE_TAIL = Buffer.from(',"batch_id":');
const CLOSE_BRACE = 0x7d;

/** Where a sample row's private tail starts; throws on anything that is not a sample row. */
function privateTailAt(row: Buffer): number {
  const cut = row.lastIndexOf(PRIVATE_TAIL);
  if (cut < 0 || !row.subarray(0, ROW_HEAD.length).equals(ROW_HEAD) || row[row.length - 1] !== CLOSE_BRACE) {
    // Not a sample row (e.g. an exception ClickHouse wrote into the stream): never pass it on.
    throw new Error(`unexpected row from ClickHouse: ${row.subarray(0, 120).toString()}`);
  }
  return cut;
}

/** ClickHouse output settings under which a row's text is what JSON.stringify gives for its parsed value. */
const SAMPLE_SETTINGS: ClickHouseSettings = {
  ...SETTINGS,
  // `a/b`, not ClickHouse's default `a\/b` (both parse the same; this keeps the bytes JSON.stringify's).
  output_format_json_escape_forward_slashes: 0,
};

/**
 * One page of samples in (timestamp, metric_name) order, strictly after `after`, duplicates
 * collapsed (one row per identity: within one GPU, (timestamp, metric_name) is the identity).
 * Reads one row more than the page to tell whether another page exists.
 */
export async function telemetryPage(
  client: ClickHouseClient,
  w: Window,
  page: { limit: number; after?: CursorKey },
  signal?: AbortSignal,
): Promise<SamplePage> {
  const { where, params } = windowFilter(w);
  let keyset = '';
  if (page.after) {
    // The plain `timestamp >=` lets the primary key skip to the cursor; the tuple decides exactly.
    // It compares whole identities, so every copy of the cursor's sample is behind it.
    keyset = ` AND timestamp >= fromUnixTimestamp64Milli({after_ts:Int64}, 'UTC')
      AND (timestamp, metric_name) > (fromUnixTimestamp64Milli({after_ts:Int64}, 'UTC'), {after_metric:String})`;
    Object.assign(params, { after_ts: clamp(page.after.ts), after_metric: page.after.metric });
  }
  const lines = await jsonLineBytes(
    client,
    // value + 0: a stored -0 answers 0, as JSON.stringify writes it.
    // labels (an ALIAS of labels_raw) is parsed in the outer query, for the page's rows only, not
    // for every row of the window the sort reads.
    `SELECT timestamp, metric_name, value, gpu_id, device, uuid, model_name, hostname,
       container, pod, namespace, labels_raw, ${LABELS_MAP} AS labels, batch_id, line
     FROM (
       SELECT timestamp, metric_name, value + 0 AS value, gpu_id, device, uuid, model_name, hostname,
         container, pod, namespace, labels_raw, batch_id, line
       FROM ${T.samples}
       WHERE ${where}${keyset}
       ORDER BY timestamp, metric_name, ${LATEST_COPY_FIRST}
       LIMIT 1 BY timestamp, metric_name
       LIMIT {limit:UInt32}
     )
     ORDER BY timestamp, metric_name`,
    { ...params, limit: page.limit + 1 },
    signal,
    SAMPLE_SETTINGS,
  );
  // Every line is checked, the extra one too: ClickHouse may append an exception to a stream that
  // failed late, and such a tail must fail the page, not make a cursor.
  const cuts = lines.map(privateTailAt);
  let next: CursorKey | undefined;
  if (lines.length > page.limit) {
    // Only the cursor's row is parsed (before its tail is cut below).
    const last = JSON.parse(lines[page.limit - 1].toString()) as { timestamp: string; metric_name: string; batch_id: string; line: number };
    next = { ts: Date.parse(last.timestamp), metric: last.metric_name, batch: last.batch_id, line: last.line };
  }
  // The tail's leading comma becomes the closing brace, in place: the row without batch_id and line.
  const data = lines.slice(0, page.limit).map((row, i) => {
    row[cuts[i]] = CLOSE_BRACE;
    return row.subarray(0, cuts[i] + 1);
  });
  return next ? { data, next } : { data };
}

export interface MetricSummaryRow {
  metric_name: string;
  count: number;
  min: number;
  max: number;
  avg: number;
  first_timestamp: string;
  last_timestamp: string;
  last_value: number;
}

export function gpuSummary(client: ClickHouseClient, w: Window, signal?: AbortSignal): Promise<MetricSummaryRow[]> {
  const { where, params } = windowFilter(w);
  return rows<MetricSummaryRow>(
    client,
    `SELECT toString(metric_name) AS metric_name, count() AS count, min(v) AS min, max(v) AS max,
       avg(v) AS avg, min(ts) AS first_timestamp, max(ts) AS last_timestamp, argMax(v, ts) AS last_value
     FROM (${collapsedValues(where)})
     GROUP BY metric_name ORDER BY metric_name`,
    params,
    signal,
  );
}

export interface MetricStatRow {
  metric_name: string;
  samples: number;
  gpus: number;
  min: number;
  max: number;
  avg: number;
  first_seen: string;
  last_seen: string;
}

export function listMetrics(client: ClickHouseClient, signal?: AbortSignal): Promise<MetricStatRow[]> {
  return rows<MetricStatRow>(
    client,
    // Values from rollup_1d (exact over de-duplicated samples, the later upload's value);
    // first/last seen from metric_stats (which timestamps exist does not depend on duplicates).
    `SELECT metric_name, samples, gpus, min, max, avg, first_seen, last_seen
     FROM (
       SELECT toString(metric_name) AS metric_name, sum(count) AS samples, uniqExact(uuid) AS gpus,
         min(min) AS min, max(max) AS max, sum(sum) / sum(count) AS avg
       FROM ${T.rollup1d} FINAL GROUP BY metric_name
     ) AS r
     INNER JOIN (
       SELECT metric_name, min(first_seen) AS first_seen, max(last_seen) AS last_seen FROM ${T.metrics} GROUP BY metric_name
     ) AS m USING (metric_name)
     ORDER BY metric_name`,
    {},
    signal,
  );
}
