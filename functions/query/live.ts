import type { ClickHouseClient } from '@clickhouse/client';
import { randomBytes } from 'node:crypto';
import type { NatsConnection, Subscription } from 'nats';
import { loggerFor } from '../../shared/log.ts';
import { SUBJECTS } from '../../shared/names.ts';
import { storedAnnouncement, type StoredAnnouncement } from '../../shared/schemas.ts';
import type { Res } from '../../shared/http.ts';
import { liveSamples, type LiveSample } from './live-sql.ts';

// Live samples over Server-Sent Events. collect announces each stored group of batches on
// SUBJECTS.stored; this relay holds ONE core-NATS subscription per process, reads the new rows of
// an announced group ONCE (one ClickHouse query by batch id, only for the GPUs and metrics some
// client watches), and fans them out to the clients whose filter they match.
// - Event ids are `<boot>-<seq>` (seq: one per announcement, per process). A client reconnecting
//   with Last-Event-ID of this process within LIVE_RESUME_WINDOW_MS gets what it missed from a
//   ring buffer; otherwise it gets a `reset` event (reload the chart). Filters of clients that
//   left keep being read for that window, so the ring holds what a reconnecting client needs.
// - At most LIVE_MAX_CLIENTS connections per process (503 beyond), at most LIVE_MAX_PENDING
//   events queued per slow client: beyond that its queue is dropped and a `dropped` event says
//   how many were lost (memory stays bounded).
// - A comment line every LIVE_HEARTBEAT_MS keeps proxies from closing an idle stream.

export interface LiveFilter {
  uuid?: string;
  /** Empty: every metric. */
  metrics: string[];
}

export interface LiveOptions {
  maxClients: number;
  maxPending: number;
  resumeWindowMs: number;
  ringSize: number;
  heartbeatMs: number;
  /** Upper bound of rows read per announcement. */
  maxRows: number;
}

interface RingEntry {
  seq: number;
  at: number;
  samples: LiveSample[];
}

interface Client {
  filter: LiveFilter;
  res: Res;
  queue: string[];
  writing: boolean;
  /** Events dropped since the client was last told (a `dropped` event goes before the next one). */
  dropped: number;
  droppedTotal: number;
}

export type Announcement = StoredAnnouncement;

const log = loggerFor('query');

export const matches = (f: LiveFilter, s: LiveSample) =>
  (f.uuid === undefined || s.uuid === f.uuid) && (f.metrics.length === 0 || f.metrics.includes(s.metric_name));

function parseAnnouncement(data: Uint8Array): Announcement | undefined {
  try {
    const parsed = storedAnnouncement.safeParse(JSON.parse(new TextDecoder().decode(data)));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined; // not JSON
  }
}

export class LiveRelay {
  readonly boot = randomBytes(4).toString('hex');
  private seq = 0;
  private readonly ring: RingEntry[] = [];
  private readonly clients = new Set<Client>();
  /** Filters of clients that left, read until `until` so a reconnect can resume. */
  private lingering: { filter: LiveFilter; until: number }[] = [];
  private sub?: Promise<Subscription>;
  private chain: Promise<void> = Promise.resolve();
  /** (time, rows) of recent announcements: rows stored per second for the pipeline page. */
  private readonly stored: { at: number; rows: number }[] = [];
  private heartbeat?: NodeJS.Timeout;

  constructor(
    private readonly opts: LiveOptions,
    private readonly deps: { nats: () => Promise<NatsConnection>; clickhouse: () => ClickHouseClient },
  ) {}

  /** Subscribes once per process (on first use). */
  start(): Promise<Subscription> {
    this.sub ??= this.deps.nats().then((nc) => {
      const sub = nc.subscribe(SUBJECTS.stored);
      void (async () => {
        for await (const m of sub) {
          const a = parseAnnouncement(m.data);
          if (a) this.chain = this.chain.then(() => this.handle(a)).catch((e) => log.warn({ err: e }, 'live relay: cannot read announced samples'));
        }
      })();
      return sub;
    });
    this.sub.catch(() => (this.sub = undefined));
    this.heartbeat ??= setInterval(() => this.beat(), this.opts.heartbeatMs).unref();
    return this.sub;
  }

  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    const sub = await this.sub?.catch(() => undefined);
    sub?.unsubscribe();
    for (const c of this.clients) {
      c.res.end();
      c.res.socket?.end();
    }
    this.clients.clear();
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Rows announced as stored within the last `windowMs`, per second. */
  rowsPerSecond(windowMs = 60_000, now = Date.now()): { rows_per_second: number; window_seconds: number } {
    const since = now - windowMs;
    const rows = this.stored.filter((s) => s.at >= since).reduce((n, s) => n + s.rows, 0);
    return { rows_per_second: rows / (windowMs / 1000), window_seconds: windowMs / 1000 };
  }

  /** What is being watched now (clients and lingering filters). */
  watched(now = Date.now()): { uuids: string[]; metrics: string[] } {
    this.lingering = this.lingering.filter((l) => l.until > now);
    const filters = [...[...this.clients].map((c) => c.filter), ...this.lingering.map((l) => l.filter)];
    const uuids = new Set<string>();
    const metrics = new Set<string>();
    for (const f of filters) {
      if (f.uuid !== undefined) uuids.add(f.uuid);
      else for (const m of f.metrics) metrics.add(m);
    }
    return { uuids: [...uuids], metrics: [...metrics] };
  }

  async handle(a: Announcement, now = Date.now()): Promise<void> {
    this.stored.push({ at: now, rows: a.rows });
    while (this.stored.length && this.stored[0].at < now - 10 * 60_000) this.stored.shift();
    const seq = ++this.seq;
    const { uuids, metrics } = this.watched(now);
    let samples: LiveSample[] = [];
    if ((uuids.length || metrics.length) && a.batches.length) {
      samples = await liveSamples(this.deps.clickhouse(), { batches: a.batches, uuids, metrics, limit: this.opts.maxRows });
    }
    this.ring.push({ seq, at: now, samples });
    while (this.ring.length > this.opts.ringSize || (this.ring.length && this.ring[0].at < now - this.opts.resumeWindowMs)) this.ring.shift();
    if (samples.length === 0) return;
    for (const c of this.clients) this.send(c, seq, samples);
  }

  private send(c: Client, seq: number, samples: LiveSample[]): void {
    const mine = samples.filter((s) => matches(c.filter, s));
    if (mine.length === 0) return;
    this.enqueue(c, `id: ${this.boot}-${seq}\nevent: samples\ndata: ${JSON.stringify({ samples: mine })}\n\n`);
  }

  private enqueue(c: Client, chunk: string): void {
    if (c.queue.length >= this.opts.maxPending) {
      c.dropped += c.queue.length;
      c.droppedTotal += c.queue.length;
      c.queue.length = 0;
    }
    c.queue.push(chunk);
    this.flush(c);
  }

  private flush(c: Client): void {
    if (c.writing) return;
    while (c.queue.length) {
      if (c.dropped > 0) {
        c.res.write(`event: dropped\ndata: ${JSON.stringify({ dropped: c.dropped, dropped_total: c.droppedTotal, reason: 'client too slow; reload to catch up' })}\n\n`);
        c.dropped = 0;
      }
      const ok = c.res.write(c.queue.shift()!);
      if (!ok) {
        c.writing = true;
        c.res.once('drain', () => {
          c.writing = false;
          this.flush(c);
        });
        return;
      }
    }
  }

  private beat(): void {
    for (const c of this.clients) if (!c.writing) c.res.write(`: heartbeat ${new Date().toISOString()}\n\n`);
  }

  /** Whether one more client may connect. */
  full(): boolean {
    return this.clients.size >= this.opts.maxClients;
  }

  /** Streams to `res` until the client leaves. */
  attach(res: Res, filter: LiveFilter, lastEventId?: string): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    res.flushHeaders();
    const c: Client = { filter, res, queue: [], writing: false, dropped: 0, droppedTotal: 0 };
    this.clients.add(c);
    const resumeSeconds = Math.round(this.opts.resumeWindowMs / 1000);
    c.queue.push(`retry: 2000\nevent: hello\ndata: ${JSON.stringify({ id: `${this.boot}-${this.seq}`, resume_window_seconds: resumeSeconds })}\n\n`);
    if (lastEventId !== undefined) this.resume(c, lastEventId);
    this.flush(c);
    res.on('close', () => {
      this.clients.delete(c);
      this.lingering.push({ filter, until: Date.now() + this.opts.resumeWindowMs });
    });
  }

  private resume(c: Client, lastEventId: string): void {
    const m = /^([0-9a-f]{8})-(\d{1,15})$/.exec(lastEventId);
    const oldest = this.ring[0]?.seq ?? this.seq + 1;
    if (!m || m[1] !== this.boot || Number(m[2]) > this.seq || Number(m[2]) < oldest - 1) {
      c.queue.push(`event: reset\ndata: ${JSON.stringify({ reason: 'cannot resume from this Last-Event-ID (another process, or older than the resume window); reload' })}\n\n`);
      return;
    }
    for (const e of this.ring) if (e.seq > Number(m[2])) this.send(c, e.seq, e.samples);
  }
}
