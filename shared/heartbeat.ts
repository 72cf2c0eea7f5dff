import type { JsMsg } from 'nats';

// In-progress signals (`+WPI`, JsMsg.working()) that let the consumers run with a short ack_wait:
// a killed worker's messages come back within seconds, while a busy worker's never do.

/** Heartbeats must fit this many times into ack_wait, so a late one or two do not cause a redelivery. */
export const HEARTBEATS_PER_ACK_WAIT = 3;

/** Why a heartbeat interval does not suit a consumer's ack_wait, or undefined when it does. */
export function heartbeatProblem(heartbeatMs: number, ackWaitMs: number): string | undefined {
  if (heartbeatMs * HEARTBEATS_PER_ACK_WAIT <= ackWaitMs) return undefined;
  return (
    `WORKER_HEARTBEAT_MS (${heartbeatMs}) must be at most 1/${HEARTBEATS_PER_ACK_WAIT} of the consumer's ack_wait ` +
    `(${ackWaitMs} ms, CONSUMER_ACK_WAIT_MS at provisioning), or busy messages would be redelivered`
  );
}

/**
 * Every message one pull loop holds, heartbeated every `everyMs`: the ones being handled and the
 * ones already delivered but not yet handed out (shared/pull.ts registers each as it arrives;
 * unsignalled, a waiting message would be redelivered elsewhere after ack_wait and handled twice).
 * A message leaves the set when it is settled.
 */
export class HeldMessages {
  private readonly held = new Set<JsMsg>();
  private readonly timer: NodeJS.Timeout;

  constructor(everyMs: number) {
    this.timer = setInterval(() => this.beat(), everyMs);
    this.timer.unref();
  }

  hold(msgs: JsMsg[]): void {
    for (const m of msgs) this.held.add(m);
  }

  /** Acked, nak'ed, terminated or given up on: no more heartbeats (it comes back after ack_wait). */
  release(msgs: JsMsg[]): void {
    for (const m of msgs) this.held.delete(m);
  }

  get size(): number {
    return this.held.size;
  }

  beat(): void {
    for (const m of this.held) m.working();
  }

  stop(): void {
    clearInterval(this.timer);
    this.held.clear();
  }
}

/**
 * Lets timers (the heartbeat above) and I/O run during CPU-bound work that would otherwise keep
 * the event loop busy for seconds: a parse loop over data already in memory never returns to it.
 * Call `due()` per item (a counter, cheap) and `await pause()` when it is true.
 */
export class EventLoopPacer {
  private count = 0;
  private last = performance.now();

  constructor(
    private readonly maxBusyMs = 50,
    private readonly checkEvery = 256,
  ) {}

  due(): boolean {
    if (++this.count < this.checkEvery) return false;
    this.count = 0;
    return performance.now() - this.last >= this.maxBusyMs;
  }

  async pause(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.last = performance.now();
  }
}
