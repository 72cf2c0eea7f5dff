import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import { canonicalColumn } from '../../shared/schemas.ts';

// The load generator (`npm run cli -- replay FILE`): replays a DCGM CSV as live data, the original
// system's streamer. Every second it uploads the rows due at --rate rows/s, re-stamped with the
// current time: a pass over the file keeps the rows' relative times (scrapes stay apart) and
// starts after the previous pass's last time, so no sample repeats another's (uuid, metric, time).

export interface ReplayOptions {
  file: string;
  /** Upload function base URL. */
  url: string;
  token?: string;
  /** Rows per second (a profile may change it while running). */
  rate: number | (() => number);
  /** Stop after this many ms (default: one pass over the file). */
  durationMs?: number;
  /** Start over at the end of the file until durationMs. */
  loop?: boolean;
  /** Called after every upload (status 0: no answer after every attempt). */
  onUpload?: (u: { rows: number; status: number; id?: string; totalRows: number }) => void;
  signal?: AbortSignal;
}

export interface ReplayResult {
  rows: number;
  /** Rows the rate asked for that were not sent because the target took too long (see below). */
  behind: number;
  uploads: number;
  ids: string[];
  /** Uploads not answered 202 (after their retries). */
  failed: number;
  /** Attempts repeated after a connection error or a 409. */
  retries: number;
}

const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;

/** "90", "90s", "5m", "1h" → ms. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new Error(`--duration must be a number with an optional unit (ms, s, m, h), e.g. 90s or 5m; got "${text.slice(0, 40)}"`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
}

/** Attempts per upload: a connection error or a 409 (the key's earlier attempt still being received) is retried. */
const ATTEMPTS = 5;

/**
 * POSTs one upload under its own Idempotency-Key, retrying with the same key and body: an upload
 * the server stored but whose answer was lost (a connection error) is then answered with the same
 * id instead of being stored twice or dropped. undefined once aborted.
 */
async function send(opts: ReplayOptions, body: string, result: ReplayResult): Promise<{ res?: Response; answer: { id?: string } } | undefined> {
  const headers: Record<string, string> = { 'content-type': 'text/csv', 'idempotency-key': `replay-${randomUUID()}` };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  for (let attempt = 1; ; attempt++) {
    let res: Response | undefined;
    try {
      res = await fetch(`${opts.url.replace(/\/$/, '')}/api/v1/uploads`, { method: 'POST', body, headers, signal: opts.signal });
    } catch (e) {
      if (opts.signal?.aborted) return undefined;
      if (attempt === ATTEMPTS) return { answer: {} };
    }
    if (res && (res.status !== 409 || attempt === ATTEMPTS)) return { res, answer: (await res.json().catch(() => ({}))) as { id?: string } };
    await res?.body?.cancel();
    result.retries++;
    await new Promise((r) => setTimeout(r, 250 * attempt));
  }
}

export async function replay(opts: ReplayOptions): Promise<ReplayResult> {
  const records = parse(readFileSync(opts.file), { skip_empty_lines: true, relax_column_count: true }) as string[][];
  const header = records.shift();
  if (!header) throw new Error(`${opts.file} is empty`);
  const tsColumn = header.map(canonicalColumn).indexOf('timestamp');
  if (tsColumn < 0) throw new Error(`${opts.file} has no timestamp column`);
  const times = records.map((r) => Date.parse(r[tsColumn]));
  const valid = times.filter((t) => Number.isFinite(t));
  if (valid.length === 0) throw new Error(`${opts.file} has no row with a valid timestamp`);
  const first = Math.min(...valid);
  const headerLine = header.map(quote).join(',') + '\n';
  const rateOf = typeof opts.rate === 'function' ? opts.rate : () => opts.rate as number;
  const started = Date.now();
  const deadline = opts.durationMs === undefined ? Infinity : started + opts.durationMs;
  const result: ReplayResult = { rows: 0, behind: 0, uploads: 0, ids: [], failed: 0, retries: 0 };
  let next = 0; // next record
  let passBase = started; // time the current pass's first scrape is stamped with
  let lastStamp = -Infinity;
  let due = 0; // rows owed by the rate so far
  let tick = started;
  let accounted = -1; // time up to which the rate has been added to `due` (-1: not yet)
  let finished = false;
  while (!finished && !opts.signal?.aborted && Date.now() < deadline) {
    // The rate accrues with time, so an upload slower than a second does not lower it.
    const now = Date.now();
    due += accounted < 0 ? rateOf() : (rateOf() * (now - accounted)) / 1000;
    accounted = now;
    // A target slower than the rate is not flooded with the backlog in one upload: at most two
    // seconds' worth go out at once, and the rows beyond are counted as not sent.
    if (due > 2 * rateOf()) {
      result.behind += Math.floor(due - 2 * rateOf());
      due = 2 * rateOf();
    }
    let body = headerLine;
    let take = 0;
    for (; take < Math.floor(due); take++) {
      if (next >= records.length) {
        if (!opts.loop) {
          finished = true;
          break;
        }
        next = 0;
        passBase = Math.max(Date.now(), lastStamp + 1000);
      }
      const stamp = passBase + ((Number.isFinite(times[next]) ? times[next] : first) - first);
      lastStamp = Math.max(lastStamp, stamp);
      const fields = [...records[next++]];
      fields[tsColumn] = new Date(stamp).toISOString();
      body += fields.map(quote).join(',') + '\n';
    }
    due -= take;
    if (take > 0) {
      const sent = await send(opts, body, result);
      if (!sent) break;
      const { res, answer } = sent;
      result.uploads++;
      if (res?.status === 202 && answer.id) {
        result.rows += take;
        result.ids.push(answer.id);
      } else result.failed++;
      opts.onUpload?.({ rows: take, status: res?.status ?? 0, id: answer.id, totalRows: result.rows });
    }
    tick += 1000;
    const wait = tick - Date.now();
    if (!finished && wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  return result;
}
