import type { CloudEventV1 } from 'cloudevents';
import type { JsMsg, NatsConnection } from 'nats';
import { ConfigError, type WorkerConfig } from './config.ts';
import { NATS, fromNatsMsg, toEventWithRawData, toNatsHeaders } from './cloudevents-nats.ts';
import { HeldMessages, heartbeatProblem } from './heartbeat.ts';
import { keepWorkQueueSwept } from './janitor.ts';
import { operationalRoutes, router, serve, type NotReady } from './http.ts';
import { loggerFor } from './log.ts';
import { messagesProcessed } from './metrics.ts';
import { SUBJECTS } from './names.ts';
import { natsReadiness } from './nats.ts';
import { BoundedPull } from './pull.ts';
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
  /** Most messages handed to the handler at once (1 = one event per call); also the most held. */
  maxMessages: number;
  /**
   * Most payload bytes this process holds per loop (requested, buffered or being handled).
   * Bounds memory and keeps deliveries below nats-server's per-client pending buffer (64 MiB).
   */
  maxBytes?: number;
  /** A batch also ends once the weights of its messages (e.g. rows) reach `max`. */
  batchWeight?: { of: (msg: JsMsg) => number; max: number };
  /**
   * Hand the handler each event's data as the raw message bytes (binary mode), without decoding
   * it as text or JSON: for handlers that pass the payload on untouched.
   */
  rawData?: boolean;
  /** How long a fetch waits to fill up before handing over what it has. */
  maxWaitMs: number;
  /**
   * While false for the batch so far, it does not wait for more messages (what is buffered goes
   * at once): for messages whose producer can tell it has nothing left (see WorkerSpec.moreFrom,
   * and collect's worker).
   */
  moreMayCome?: (batch: JsMsg[]) => boolean;
  /** Parallel fetch/handle loops in this process. */
  concurrency?: number;
  /** Extra readiness checks (e.g. ClickHouse reachable); each returns problems. */
  ready?: () => Promise<NotReady[]>;
  /** Progress signal for held messages (default cfg.WORKER_HEARTBEAT_MS); at most 1/3 of ack_wait. */
  heartbeatMs?: number;
  log?: (line: Record<string, unknown>) => void;
}

export interface RunningWorker {
  /** Messages its loops hold (delivered and not yet settled). */
  held(): number;
  stop(): Promise<void>;
  /** Resolves when the loops have ended (after stop or a fatal error). */
  done: Promise<void>;
}

/** Worker lines as `{ level, msg, ...fields }`; the default writes them with pino. */
const defaultLog = (line: Record<string, unknown>) => {
  const { level = 'info', msg, ...fields } = line;
  loggerFor('worker')[level as 'info' | 'warn' | 'error'](fields, String(msg ?? ''));
};

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

/** The CloudEvent id of a message (binary mode header), for log lines. */
function ceId(msg: JsMsg): string | undefined {
  for (const [k, v] of msg.headers ?? []) if (k.toLowerCase() === 'ce-id') return v[0];
  return undefined;
}

const WAITED = Symbol('waited');
/** Bytes a loop holds by default: well above the largest message (8 MiB), well below 64 MiB. */
const DEFAULT_MAX_BYTES = 24 * 1024 * 1024;
/** Longest a pull loop sleeps after a dependency failure. */
const MAX_LOOP_PAUSE_MS = 5000;

/** How often a batch waiting for more messages asks `moreMayCome` again. */
const MORE_MAY_COME_POLL_MS = 25;

/**
 * Groups a message iterator into batches: a batch starts with the next message and takes more
 * until it has `max` or `waitMs` passed, or — with `moreMayCome` — as soon as nothing is buffered
 * and it says no more are coming (checked every MORE_MAY_COME_POLL_MS while waiting). With
 * `weight`, a batch holds at most `weight.max` (a single heavier message goes alone): the message
 * that would take it over starts the following batch. Why: collect splits what it is handed into
 * INSERTs of COLLECT_MAX_ROWS rows, so the overshoot (one 5,000-row batch past 100,000) became an
 * INSERT of its own — 6 of an upload's 17, each a part in samples and in every view's table to
 * merge. A next() still pending when the wait ends is carried into the following batch as well, so
 * no message is dropped between batches.
 * An iterator object, not an async generator: a suspended generator keeps its registers, so it
 * held the batch it last yielded (up to COLLECT_MAX_BYTES of messages per collect loop) while it
 * waited for the next one — in a heap snapshot of an idle collect worker, the last batch of each
 * loop. Here the state is `pending` only; a batch lives as long as its caller holds it.
 */
export function batchesOf<T>(
  source: AsyncIterable<T>,
  max: number,
  waitMs: number,
  weight?: { of: (item: T) => number; max: number },
  moreMayCome?: (batch: T[]) => boolean,
): AsyncIterableIterator<T[]> {
  const it = source[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<T>> | undefined;
  let ended = false;
  async function next(): Promise<IteratorResult<T[]>> {
    if (ended) return { done: true, value: undefined };
    const first = await (pending ?? it.next());
    pending = undefined;
    if (first.done) {
      ended = true;
      return { done: true, value: undefined };
    }
    const batch = [first.value];
    let weighed = weight ? weight.of(first.value) : 0;
    const deadline = Date.now() + waitMs;
    while (batch.length < max && (!weight || weighed < weight.max)) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      pending ??= it.next();
      let timer: NodeJS.Timeout | undefined;
      const step = moreMayCome ? Math.min(left, MORE_MAY_COME_POLL_MS) : left;
      const r = await Promise.race([pending, new Promise<typeof WAITED>((res) => (timer = setTimeout(() => res(WAITED), step)))]);
      clearTimeout(timer);
      if (r === WAITED) {
        if (step < left && moreMayCome?.(batch)) continue;
        break;
      }
      pending = undefined;
      if (r.done) {
        ended = true;
        break;
      }
      const w = weight ? weight.of(r.value) : 0;
      if (weight && weighed + w > weight.max) {
        pending = Promise.resolve(r);
        break;
      }
      batch.push(r.value);
      weighed += w;
    }
    return { done: false, value: batch };
  }
  return {
    next,
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

export async function startPullWorker(opts: PullWorkerOptions): Promise<RunningWorker> {
  const log = opts.log ?? defaultLog;
  // Fails at start when the consumer does not exist (workers never create consumers).
  const info = await (await opts.nc.jetstreamManager()).consumers.info(opts.stream, opts.consumer);
  const heartbeatMs = opts.heartbeatMs ?? opts.cfg.WORKER_HEARTBEAT_MS;
  const problem = heartbeatProblem(heartbeatMs, (info.config.ack_wait ?? 0) / 1e6);
  if (problem) throw new ConfigError(`consumer ${opts.consumer}: ${problem}`);
  let stopping = false;
  const active = new Set<BoundedPull>();
  const decode = opts.rawData ? toEventWithRawData : (m: ReturnType<typeof fromNatsMsg>) => NATS.toEvent(m);

  async function fail(msg: JsMsg, reason: string, poison: boolean, transient = false) {
    const deliveries = msg.info.deliveryCount;
    if (poison || (!transient && deliveries >= opts.cfg.WORKER_MAX_DELIVER)) {
      await deadLetter(opts.nc, opts.consumer, msg, reason);
      // No term reason: servers before 2.11 ignore `+TERM <reason>` (the message would come back
      // after ack_wait); the reason travels in the dead letter's headers instead.
      msg.term();
      messagesProcessed.inc({ consumer: opts.consumer, outcome: 'dead_letter' });
      log({ level: 'error', consumer: opts.consumer, msg: 'dead-lettered', seq: msg.seq, ce_id: ceId(msg), deliveries, reason });
    } else {
      const delay = retryDelayMs(opts.cfg, deliveries);
      msg.nak(delay);
      messagesProcessed.inc({ consumer: opts.consumer, outcome: 'nak' });
      log({ level: 'warn', consumer: opts.consumer, msg: 'will retry', seq: msg.seq, ce_id: ceId(msg), deliveries, retryInMs: delay, transient, reason });
    }
  }

  /** Returns a pause (ms) before the next fetch when a dependency is down. */
  async function handleBatch(msgs: JsMsg[], held: HeldMessages): Promise<number> {
    held.hold(msgs);
    try {
      return await settleBatch(msgs);
    } finally {
      held.release(msgs);
    }
  }

  async function settleBatch(msgs: JsMsg[]): Promise<number> {
    const events: CloudEventV1<unknown>[] = [];
    const kept: JsMsg[] = [];
    for (const m of msgs) {
      try {
        events.push(decode(fromNatsMsg(m)) as CloudEventV1<unknown>);
        kept.push(m);
      } catch (e) {
        await fail(m, `not a CloudEvent: ${e instanceof Error ? e.message : e}`, true);
      }
    }
    if (kept.length === 0) return 0;
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
    }
    return 0;
  }

  /**
   * Takes the next batch, handles it and frees its budget; undefined once the pull has ended. A
   * function of its own so the batch goes with its frame: awaiting the next batch in loop() kept
   * the handled one alive there, as the suspended generator did (see batchesOf).
   */
  async function handleNext(batches: AsyncIterator<JsMsg[]>, pull: BoundedPull, held: HeldMessages): Promise<number | undefined> {
    const next = await batches.next();
    if (next.done) return undefined;
    let settled = false;
    try {
      const pause = await handleBatch(next.value, held);
      settled = true;
      return pause;
    } finally {
      // Settled: every message acked, nak'ed or dead-lettered (that publish acknowledged), and the
      // handler done with the payloads, which the pull may then reuse.
      pull.release(next.value, settled);
    }
  }

  async function loop() {
    while (!stopping && !opts.nc.isClosed()) {
      // Pulls are sized by what this loop holds (messages and bytes), so a slow handler stops the
      // flow instead of letting the client buffer the stream (see shared/pull.ts).
      // Heartbeats for every message this loop holds: handled, or delivered and waiting its turn.
      const held = new HeldMessages(heartbeatMs);
      const pull = new BoundedPull(opts.nc, opts.stream, opts.consumer, {
        maxMessages: opts.maxMessages,
        maxBytes: opts.maxBytes ?? DEFAULT_MAX_BYTES,
        onDelivered: (m) => held.hold([m]),
      });
      active.add(pull);
      try {
        const batches = batchesOf(pull, opts.maxMessages, opts.maxWaitMs, opts.batchWeight, opts.moreMayCome);
        for (;;) {
          const pause = await handleNext(batches, pull, held);
          if (pause === undefined) break;
          // No break when stopping: what is already delivered is handled on the way, which is the
          // drain; the iterator ends after it. Delivered messages waiting behind the batch keep
          // getting heartbeats, during a pause too (capped anyway, so an outage is re-checked).
          if (pause > 0 && !stopping) await new Promise((r) => setTimeout(r, Math.min(pause, MAX_LOOP_PAUSE_MS)));
        }
      } catch (e) {
        if (stopping) break;
        log({ level: 'warn', consumer: opts.consumer, msg: 'pull failed', error: String(e) });
        await new Promise((r) => setTimeout(r, 1000));
      } finally {
        // Whatever is still held unsettled is redelivered after ack_wait.
        held.stop();
        active.delete(pull);
        pull.close();
      }
    }
  }

  const loops = Array.from({ length: opts.concurrency ?? 1 }, () => loop());
  const done = Promise.all(loops).then(() => undefined);
  return {
    done,
    held: () => [...active].reduce((n, p) => n + p.held().messages, 0),
    async stop() {
      stopping = true;
      for (const a of active) a.close();
      await done;
    },
  };
}

/** One consumer a worker process drains. */
export interface WorkerSpec extends Omit<PullWorkerOptions, 'nc'> {
  /**
   * Another consumer of this process whose handling publishes this one's messages (collect's
   * inserts queue its rollup passes): a batch waits for more only while that consumer holds
   * messages. Once it holds none, what is buffered goes at once instead of after maxWaitMs.
   * Takes the place of moreMayCome.
   */
  moreFrom?: string;
}

/**
 * Process entry for a worker: connects, serves /healthz /readyz /metrics, runs the pull loops of
 * each consumer it drains and drains them on SIGTERM/SIGINT (the Functions Framework CLI would
 * exit at once instead).
 */
export async function runWorkerProcess(
  name: string,
  connect: () => Promise<NatsConnection>,
  options: (nc: NatsConnection) => WorkerSpec | WorkerSpec[],
  onClose: () => Promise<void> = async () => {},
): Promise<void> {
  const nc = await connect();
  const all = [options(nc)].flat();
  const byConsumer = new Map<string, RunningWorker>();
  const workers: RunningWorker[] = [];
  for (const { moreFrom, ...opts } of all) {
    const moreMayCome = moreFrom ? () => (byConsumer.get(moreFrom)?.held() ?? 1) > 0 : opts.moreMayCome;
    const worker = await startPullWorker({ ...opts, nc, moreMayCome });
    byConsumer.set(opts.consumer, worker);
    workers.push(worker);
  }
  const readiness = async () => {
    const [natsProblems, ...others] = await Promise.all([natsReadiness(async () => nc), ...all.map((o) => (o.ready ? o.ready() : []))]);
    return [...natsProblems, ...others.flat()];
  };
  const { cfg } = all[0];
  const server =
    cfg.WORKER_HTTP_PORT > 0
      ? await serve(router(operationalRoutes(readiness, name), { name }), { port: cfg.WORKER_HTTP_PORT, host: cfg.HTTP_HOST }, undefined, { handleSignals: false })
      : undefined;
  const log = loggerFor(name);
  // Leftovers of a NATS crash are removed once the server is back (any replica may do it).
  const janitors = all.map((opts) => keepWorkQueueSwept(nc, opts.stream, opts.consumer));
  for (const opts of all) log.info({ stream: opts.stream, consumer: opts.consumer }, 'worker started');
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining worker');
    for (const j of janitors) j.stop();
    await Promise.all(workers.map((w) => w.stop()));
    server?.close();
    await nc.drain().catch(() => undefined);
    await onClose();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  await Promise.all(workers.map((w) => w.done));
}
