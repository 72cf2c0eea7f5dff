import type { CloudEventV1 } from 'cloudevents';
import type { JsMsg, NatsConnection } from 'nats';
import type { WorkerConfig } from './config.ts';
import { NATS, fromNatsMsg, toNatsHeaders } from './cloudevents-nats.ts';
import { operationalRoutes, router, serve } from './http.ts';
import { messagesProcessed } from './metrics.ts';
import { SUBJECTS } from './names.ts';
import { isTransient } from './transient.ts';

// Runs a CloudEvent function as a JetStream pull worker: fetch → decode the NATS message into a
// CloudEvent → call the same handler the Functions Framework calls → ack on success, nak with
// exponential delay on failure, and after a bounded number of deliveries publish the message to
// the dead-letter subject (with the reason) and terminate it. Transient failures (a dependency
// down) are retried without that bound. SIGTERM stops fetching and lets the
// batch in hand finish before the connection drains.

export interface BatchOutcome {
  /** Messages that can never succeed (bad payload): dead-lettered at once, not retried. */
  poison?: { index: number; reason: string }[];
}

/** Thrown by a handler for a message that can never succeed: dead-lettered without retries. */
export class PermanentError extends Error {}

export { isTransient };

export type BatchHandler = (events: CloudEventV1<unknown>[], msgs: JsMsg[]) => Promise<BatchOutcome | void>;

export interface PullWorkerOptions {
  nc: NatsConnection;
  stream: string;
  consumer: string;
  handle: BatchHandler;
  cfg: WorkerConfig;
  /** Messages per fetch; the handler gets them together (1 = one event per call). */
  maxMessages: number;
  /** How long a fetch waits to fill up before handing over what it has. */
  maxWaitMs: number;
  /** Parallel fetch/handle loops in this process. */
  concurrency?: number;
  /** Extra readiness checks (e.g. ClickHouse reachable); each returns problems. */
  ready?: () => Promise<string[]>;
  /** Progress signal while a batch runs, so the server does not redeliver it (below ack_wait). */
  heartbeatMs?: number;
  log?: (line: Record<string, unknown>) => void;
}

export interface RunningWorker {
  stop(): Promise<void>;
  /** Resolves when the loops have ended (after stop or a fatal error). */
  done: Promise<void>;
}

const defaultLog = (line: Record<string, unknown>) => console.log(JSON.stringify({ time: new Date().toISOString(), ...line }));

export function retryDelayMs(cfg: WorkerConfig, deliveryCount: number): number {
  return Math.min(60_000, cfg.WORKER_RETRY_BASE_MS * 2 ** Math.max(0, deliveryCount - 1));
}

export async function deadLetter(nc: NatsConnection, consumer: string, msg: JsMsg, reason: string): Promise<void> {
  const headers = toNatsHeaders(fromNatsMsg(msg));
  headers.set('x-dead-letter-reason', reason.slice(0, 1000).replace(/[\r\n]+/g, ' '));
  headers.set('x-dead-letter-consumer', consumer);
  headers.set('x-original-subject', msg.subject);
  headers.set('x-original-stream-seq', String(msg.seq));
  headers.set('x-deliveries', String(msg.info.deliveryCount));
  await nc.jetstream().publish(SUBJECTS.deadLetter(consumer), msg.data, { headers });
}

const WAITED = Symbol('waited');
/** Longest a pull loop sleeps after a dependency failure (ack_wait is 60 s by default). */
const MAX_LOOP_PAUSE_MS = 5000;

/**
 * Groups a message iterator into batches: a batch starts with the next message and takes more
 * until it has `max` or `waitMs` passed. A next() still pending when the wait ends is carried
 * into the following batch, so no message is dropped between batches.
 */
export async function* batchesOf<T>(source: AsyncIterable<T>, max: number, waitMs: number): AsyncGenerator<T[]> {
  const it = source[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<T>> | undefined;
  for (;;) {
    const first = await (pending ?? it.next());
    pending = undefined;
    if (first.done) return;
    const batch = [first.value];
    const deadline = Date.now() + waitMs;
    while (batch.length < max) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      pending = it.next();
      let timer: NodeJS.Timeout | undefined;
      const r = await Promise.race([pending, new Promise<typeof WAITED>((res) => (timer = setTimeout(() => res(WAITED), left)))]);
      clearTimeout(timer);
      if (r === WAITED) break;
      pending = undefined;
      if (r.done) {
        yield batch;
        return;
      }
      batch.push(r.value);
    }
    yield batch;
  }
}

export async function startPullWorker(opts: PullWorkerOptions): Promise<RunningWorker> {
  const log = opts.log ?? defaultLog;
  const js = opts.nc.jetstream();
  const consumer = await js.consumers.get(opts.stream, opts.consumer);
  let stopping = false;
  const active = new Set<{ stop: () => void }>();

  async function fail(msg: JsMsg, reason: string, poison: boolean, transient = false) {
    const deliveries = msg.info.deliveryCount;
    if (poison || (!transient && deliveries >= opts.cfg.WORKER_MAX_DELIVER)) {
      await deadLetter(opts.nc, opts.consumer, msg, reason);
      // No term reason: servers before 2.11 ignore `+TERM <reason>` (the message would come back
      // after ack_wait); the reason travels in the dead letter's headers instead.
      msg.term();
      messagesProcessed.inc({ consumer: opts.consumer, outcome: 'dead_letter' });
      log({ level: 'error', consumer: opts.consumer, msg: 'dead-lettered', seq: msg.seq, deliveries, reason });
    } else {
      const delay = retryDelayMs(opts.cfg, deliveries);
      msg.nak(delay);
      messagesProcessed.inc({ consumer: opts.consumer, outcome: 'nak' });
      log({ level: 'warn', consumer: opts.consumer, msg: 'will retry', seq: msg.seq, deliveries, retryInMs: delay, transient, reason });
    }
  }

  /** Returns a pause (ms) before the next fetch when a dependency is down. */
  async function handleBatch(msgs: JsMsg[]): Promise<number> {
    const events: CloudEventV1<unknown>[] = [];
    const kept: JsMsg[] = [];
    for (const m of msgs) {
      try {
        events.push(NATS.toEvent(fromNatsMsg(m)) as CloudEventV1<unknown>);
        kept.push(m);
      } catch (e) {
        await fail(m, `not a CloudEvent: ${e instanceof Error ? e.message : e}`, true);
      }
    }
    if (kept.length === 0) return 0;
    const heartbeat = setInterval(() => kept.forEach((m) => m.working()), opts.heartbeatMs ?? 15_000);
    try {
      const outcome = (await opts.handle(events, kept)) ?? {};
      const poison = new Map((outcome.poison ?? []).map((p) => [p.index, p.reason]));
      for (const [i, m] of kept.entries()) {
        const reason = poison.get(i);
        if (reason !== undefined) await fail(m, reason, true);
        else {
          m.ack();
          messagesProcessed.inc({ consumer: opts.consumer, outcome: 'ack' });
        }
      }
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      const transient = isTransient(e);
      for (const m of kept) await fail(m, reason, e instanceof PermanentError, transient);
      // Back off this loop too, so an outage is not hammered with fresh deliveries.
      if (transient) return retryDelayMs(opts.cfg, Math.max(...kept.map((m) => m.info.deliveryCount)));
    } finally {
      clearInterval(heartbeat);
    }
    return 0;
  }

  async function loop() {
    while (!stopping && !opts.nc.isClosed()) {
      try {
        // consume() keeps one pull subscription open. Repeated fetch() calls lose a message now
        // and then: one the server delivers as a fetch expires is dropped by the client and only
        // comes back after ack_wait (measured: a 60 s stall at the end of a 1 M-row upload).
        const messages = await consumer.consume({ max_messages: opts.maxMessages, expires: 30_000 });
        const handle = { stop: () => void messages.close() };
        active.add(handle);
        try {
          for await (const batch of batchesOf(messages, opts.maxMessages, opts.maxWaitMs)) {
            const pause = await handleBatch(batch);
            // No break when stopping: close() completes only once the iterator has run to its end
            // (a break would leave `await messages.close()` pending forever); what is already
            // buffered is handled on the way, which is the drain. The pause is capped well below
            // ack_wait: messages buffered meanwhile get no progress signal, and one redelivered
            // elsewhere while still held here would be handled twice.
            if (pause > 0 && !stopping) await new Promise((r) => setTimeout(r, Math.min(pause, MAX_LOOP_PAUSE_MS)));
          }
        } finally {
          active.delete(handle);
          messages.stop();
        }
      } catch (e) {
        if (stopping) break;
        log({ level: 'warn', consumer: opts.consumer, msg: 'pull failed', error: String(e) });
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  const loops = Array.from({ length: opts.concurrency ?? 1 }, () => loop());
  const done = Promise.all(loops).then(() => undefined);
  return {
    done,
    async stop() {
      stopping = true;
      for (const a of active) a.stop();
      await done;
    },
  };
}

/**
 * Process entry for a worker: connects, serves /healthz /readyz /metrics, runs the pull loops
 * and drains on SIGTERM/SIGINT (the Functions Framework CLI would exit at once instead).
 */
export async function runWorkerProcess(
  name: string,
  connect: () => Promise<NatsConnection>,
  options: (nc: NatsConnection) => Omit<PullWorkerOptions, 'nc'>,
  onClose: () => Promise<void> = async () => {},
): Promise<void> {
  const nc = await connect();
  const opts = options(nc);
  const worker = await startPullWorker({ ...opts, nc });
  const readiness = async () => {
    const problems = nc.isClosed() ? ['NATS connection closed'] : [];
    return problems.concat(opts.ready ? await opts.ready() : []);
  };
  const server =
    opts.cfg.WORKER_HTTP_PORT > 0
      ? await serve(router(operationalRoutes(readiness), { name }), opts.cfg.WORKER_HTTP_PORT, undefined, { handleSignals: false })
      : undefined;
  console.log(JSON.stringify({ level: 'info', msg: `${name} worker started`, stream: opts.stream, consumer: opts.consumer }));
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(JSON.stringify({ level: 'info', msg: `${signal}: draining ${name} worker` }));
    await worker.stop();
    server?.close();
    await nc.drain().catch(() => undefined);
    await onClose();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  await worker.done;
}
