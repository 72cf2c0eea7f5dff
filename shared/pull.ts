import { createInbox, nanos, type Msg, type NatsConnection, type JsMsg, type Payload, type PublishOptions, type Subscription } from 'nats';
import { toJsMsg } from 'nats/lib/jetstream/jsmsg.js';
import { SizeClassPool } from './buffer-pool.ts';

// Messages of a durable JetStream pull consumer, requested only while what this process holds
// stays within a budget of messages AND bytes. "Held" counts messages requested but not yet
// delivered, delivered but not yet taken, and taken but not yet released (acked or nak'ed).
// Why not nats.js consume(): it asks for more as soon as messages *arrive*, not when they are
// handled, so a slow handler lets the client buffer everything up to the consumer's
// max_ack_pending — with 2.5 MB batches far past nats-server's 64 MiB per-client pending
// buffer, which disconnected collect as a slow consumer. Why not repeated fetch(): a message
// delivered as a fetch ends was dropped by the client (back only after ack_wait). Here one inbox
// subscription lives as long as the puller, so nothing delivered to it is dropped, and at most
// one pull request is outstanding.

export interface PullBudget {
  /** Most messages held at once. */
  maxMessages: number;
  /** Most payload bytes held at once; must exceed the largest message the stream accepts. */
  maxBytes: number;
  /** Server-side lifetime of one pull request (it is renewed while there is room). */
  expiresMs?: number;
  /** Called for each message as it is delivered, before it is handed out (e.g. to heartbeat it). */
  onDelivered?: (m: JsMsg) => void;
}

const ERROR_PAUSE_MS = 1000;

/**
 * The message with its payload copied out of nats.js's receive buffers, which it must not keep.
 * nats.js hands a message that fits in one socket read as a view of the whole 64 KiB read, and
 * (unpatched) one spanning socket reads as a view of a buffer grown by doubling (up to twice the
 * payload: 0.25–0.36 MiB for a 170 KB batch in a heap snapshot; patches/ now sizes that buffer
 * exactly). Held until the ack — after the INSERT,
 * the rollup recompute and the progress puts in collect — those buffers outlived young-generation
 * collections and were freed only by a full GC. Copied at once, they die young. The copy is
 * itself held until the ack, so it comes from the puller's pool and goes back to it when the
 * worker settled the message (release with recycle). Everything the worker uses (subject, reply
 * for ack/nak/working, headers, data) is kept; headers are decoded strings.
 */
function detached(nc: NatsConnection, msg: Msg, payloads: SizeClassPool): Msg {
  const data = payloads.take(msg.data.byteLength);
  data.set(msg.data);
  const { subject, sid, reply, headers } = msg;
  return {
    subject,
    sid,
    reply,
    data,
    headers,
    respond(payload?: Payload, opts?: PublishOptions): boolean {
      if (!reply) return false;
      nc.publish(reply, payload, opts);
      return true;
    },
    json: <T>() => JSON.parse(data.toString('utf8')) as T,
    string: () => data.toString('utf8'),
  };
}

interface Request {
  msgs: number;
  bytes: number;
  timer: NodeJS.Timeout;
}

export class BoundedPull implements AsyncIterator<JsMsg> {
  private readonly sub: Subscription;
  private readonly inbox = createInbox();
  private readonly buffer: JsMsg[] = [];
  private wake?: (r: IteratorResult<JsMsg>) => void;
  private request?: Request;
  private heldMsgs = 0;
  private heldBytes = 0;
  private closed = false;
  private paused?: NodeJS.Timeout;
  private readonly expiresMs: number;
  /** Payload copies: at most the budget's bytes are held, so at most that many are kept idle. */
  private readonly payloads: SizeClassPool;

  constructor(
    private readonly nc: NatsConnection,
    private readonly stream: string,
    private readonly consumer: string,
    private readonly budget: PullBudget,
  ) {
    this.expiresMs = budget.expiresMs ?? 10_000;
    this.payloads = new SizeClassPool(budget.maxBytes);
    this.sub = nc.subscribe(this.inbox, { callback: (_err, msg) => this.onMessage(msg) });
    // A closed connection delivers nothing more: end the iterator instead of waiting forever.
    void nc.closed().then(() => this.close());
    this.pull();
  }

  /** Messages and payload bytes this puller holds (for tests and metrics). */
  held(): { messages: number; bytes: number } {
    return { messages: this.heldMsgs, bytes: this.heldBytes };
  }

  private onMessage(msg: Msg): void {
    const code = msg.headers?.code ?? 0;
    if (!msg.reply || code !== 0) {
      // Status: 100 idle heartbeat (the request is alive); 408 the request expired (renewed at
      // once); anything else ends it too (409: the next message exceeds the bytes asked for,
      // too many waiting requests, consumer deleted; 503: no JetStream) and is retried after a
      // pause, so a persistent condition does not become a busy loop.
      if (code !== 100) this.requestOver(code === 408 ? 0 : ERROR_PAUSE_MS);
      return;
    }
    const size = msg.data.byteLength;
    if (this.request) {
      this.request.msgs--;
      this.request.bytes -= size;
    }
    this.heldMsgs++;
    this.heldBytes += size;
    const m = toJsMsg(detached(this.nc, msg, this.payloads));
    this.budget.onDelivered?.(m);
    if (this.wake) {
      const wake = this.wake;
      this.wake = undefined;
      wake({ value: m, done: false });
    } else this.buffer.push(m);
    if (this.request && (this.request.msgs <= 0 || this.request.bytes <= 0)) this.requestOver();
  }

  private requestOver(pauseMs = 0): void {
    if (this.request) {
      clearTimeout(this.request.timer);
      this.request = undefined;
    }
    if (pauseMs === 0) this.pull();
    else if (!this.paused) {
      this.paused = setTimeout(() => {
        this.paused = undefined;
        this.pull();
      }, pauseMs);
    }
  }

  /** Asks for what fits in the budget, when nothing is outstanding and at least half of it is free. */
  private pull(): void {
    if (this.closed || this.request || this.paused || this.nc.isClosed()) return;
    const msgs = this.budget.maxMessages - this.heldMsgs;
    const bytes = this.budget.maxBytes - this.heldBytes;
    if (msgs < 1 || (this.heldMsgs > 0 && bytes < this.budget.maxBytes / 2)) return;
    // A request the server never ends (e.g. lost in a reconnect) is given up after its lifetime.
    const timer = setTimeout(() => this.requestOver(), this.expiresMs + 5000);
    this.request = { msgs, bytes, timer };
    const next = { batch: msgs, max_bytes: bytes, expires: nanos(this.expiresMs), idle_heartbeat: nanos(Math.min(5000, this.expiresMs / 2)) };
    this.nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${this.stream}.${this.consumer}`, JSON.stringify(next), { reply: this.inbox });
  }

  /**
   * Frees the budget of messages the caller is done with (after ack, nak or term). With
   * `recycle`, their payloads go back to the pool: only when nothing can still read them (a
   * publish of the payload that failed may still sit in the client's pending output).
   */
  release(msgs: readonly JsMsg[], recycle = false): void {
    for (const m of msgs) {
      this.heldMsgs--;
      this.heldBytes -= m.data.byteLength;
      if (recycle) this.payloads.give(m.data);
    }
    this.pull();
  }

  next(): Promise<IteratorResult<JsMsg>> {
    const m = this.buffer.shift();
    if (m) return Promise.resolve({ value: m, done: false });
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.wake = resolve));
  }

  [Symbol.asyncIterator](): AsyncIterator<JsMsg> {
    return this;
  }

  /**
   * Stops asking for messages. What was already delivered is still handed out (the caller
   * handles it: that is the drain); the iterator then ends. The subscription goes with the
   * interest, so the server drops an outstanding request instead of delivering to it.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.request) clearTimeout(this.request.timer);
    clearTimeout(this.paused);
    this.request = undefined;
    this.sub.unsubscribe();
    if (this.wake && this.buffer.length === 0) {
      const wake = this.wake;
      this.wake = undefined;
      wake({ value: undefined, done: true });
    }
  }
}
