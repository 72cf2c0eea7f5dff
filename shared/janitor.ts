import { Events, type JetStreamManager, type NatsConnection } from 'nats';
import { loggerFor } from './log.ts';
import { CONSUMERS, STREAMS } from './names.ts';

// Work-queue streams delete a message when its consumer acks it. After nats-server is killed
// (kill -9, OOM) while workers ack, some of those deletes are lost although the consumer's ack
// floor survives (reproduced on 2.9: 2,496 of 4,253 acked messages still stored after a restart).
// They are never delivered again — the consumer counts them as done — but they stay forever and
// take up the stream's bounded space, so a full stream could end up pushing back on nothing.
// The janitor deletes exactly those: messages at or below the ack floor, which by definition
// every one has been acknowledged. It only ever compares with the floor the server reports, and
// the floor only moves up, so any number of replicas may run it at the same time.

/** The work queues and the one consumer that drains each. */
export const WORK_QUEUES = [
  { stream: STREAMS.uploads, consumer: CONSUMERS.ingest },
  { stream: STREAMS.telemetry, consumer: CONSUMERS.collect },
  { stream: STREAMS.rollups, consumer: CONSUMERS.rollups },
] as const;

export interface SweepResult {
  stream: string;
  consumer: string;
  /** Stream sequence up to which the consumer has acknowledged everything. */
  ackFloor: number;
  purged: number;
  /** Set when the stream and the consumer disagree and nothing was touched. */
  skipped?: string;
}

/** Purges the messages of `stream` that `consumer` has already acknowledged. */
export async function purgeAcknowledged(jsm: JetStreamManager, stream: string, consumer: string): Promise<SweepResult> {
  // Consumer first: its floor can only have grown by the time the stream is read.
  const ci = await jsm.consumers.info(stream, consumer);
  const si = await jsm.streams.info(stream);
  const ackFloor = ci.ack_floor.stream_seq;
  const result: SweepResult = { stream, consumer, ackFloor, purged: 0 };
  if (si.state.messages === 0 || si.state.first_seq > ackFloor) return result;
  if (ackFloor > si.state.last_seq) {
    // A floor past the stream's end means their states disagree (e.g. storage lost after a power
    // failure); new messages could land below it, so nothing is safe to remove.
    return { ...result, skipped: `ack floor ${ackFloor} is past the stream's last sequence ${si.state.last_seq}` };
  }
  // `seq`: purge everything below it, i.e. up to and including the floor.
  const r = await jsm.streams.purge(stream, { seq: ackFloor + 1 });
  return { ...result, purged: r.purged };
}

export async function sweepWorkQueues(jsm: JetStreamManager): Promise<SweepResult[]> {
  const out: SweepResult[] = [];
  for (const q of WORK_QUEUES) out.push(await purgeAcknowledged(jsm, q.stream, q.consumer));
  return out;
}

export function logSweep(r: SweepResult, log = loggerFor('janitor')): void {
  if (r.skipped) log.warn(r, 'work queue not swept');
  else if (r.purged > 0) log.warn(r, 'purged messages left below the ack floor (acknowledged before a NATS restart)');
  else log.debug(r, 'work queue clean');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Keeps one worker's queue swept: now, after every reconnect (a restarted server is where
 * leftovers come from; retried with backoff while JetStream recovers) and every `everyMs`. The
 * periodic sweep is needed too: a message acked out of order above the floor whose delete was
 * lost only falls below the floor later, once the messages before it are acked. Each sweep is
 * two small API requests. Ends when the connection closes.
 */
export function keepWorkQueueSwept(nc: NatsConnection, stream: string, consumer: string, everyMs = 30_000): { stop(): void } {
  const log = loggerFor('janitor');
  let running: Promise<void> | undefined;
  const sweep = async (attempts: number) => {
    for (let i = 0; i < attempts && !nc.isClosed(); i++) {
      try {
        logSweep(await purgeAcknowledged(await nc.jetstreamManager(), stream, consumer), log);
        return;
      } catch (e) {
        if (i < attempts - 1) await sleep(500 * 2 ** i);
        else log[attempts > 1 ? 'warn' : 'debug']({ err: e, stream, consumer }, 'could not sweep the work queue; trying again later');
      }
    }
  };
  const kick = (attempts: number) => {
    running ??= sweep(attempts).finally(() => (running = undefined));
  };
  kick(6);
  const timer = setInterval(() => kick(1), everyMs);
  timer.unref();
  void (async () => {
    for await (const s of nc.status()) if (s.type === Events.Reconnect) kick(6);
  })().finally(() => clearInterval(timer));
  return { stop: () => clearInterval(timer) };
}
