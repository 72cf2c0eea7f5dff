// Equal-sized buffers taken and given back, so a hot path reuses a few large buffers instead of
// allocating one per chunk: a buffer that lives through two young-generation GCs is promoted,
// and V8 frees its external memory only at the next full GC (after ≈ 64 MiB of such growth).

export class BufferPool {
  private readonly free: Buffer[] = [];

  /** @param keep at most this many idle buffers are kept; more are left to the GC */
  constructor(
    readonly size: number,
    public keep: number,
  ) {}

  /** An idle buffer (its bytes are stale), or a new one when none is idle. */
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(this.size);
  }

  /** Only once nothing else reads or writes `b` any more. */
  give(b: Buffer): void {
    if (b.length === this.size && this.free.length < this.keep) this.free.push(b);
  }

  get idle(): number {
    return this.free.length;
  }
}

const pools = new Map<number, BufferPool>();
/** The process's pool of `size`-byte buffers, keeping at least `keep` idle ones. */
export function sharedPool(size: number, keep: number): BufferPool {
  let pool = pools.get(size);
  if (!pool) pools.set(size, (pool = new BufferPool(size, keep)));
  pool.keep = Math.max(pool.keep, keep);
  return pool;
}

/**
 * Buffers of any size up to `maxSize` (message payloads), from power-of-two size classes:
 * take(n) hands out an n-byte view of a pooled buffer, give() takes it back by its backing
 * ArrayBuffer. Keeps at most `keepBytes` idle; only buffers it made, each given back once.
 */
export class SizeClassPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly made = new WeakSet<ArrayBuffer>();
  private readonly idleSet = new WeakSet<ArrayBuffer>();
  private idle = 0;

  constructor(
    readonly keepBytes: number,
    readonly maxSize = 16 * 1024 * 1024,
    readonly minSize = 4096,
  ) {}

  /** `n` bytes (stale content) backed by a pooled buffer of the next power of two. */
  take(n: number): Buffer {
    if (n > this.maxSize) return Buffer.allocUnsafeSlow(n);
    const size = Math.max(this.minSize, 2 ** Math.ceil(Math.log2(Math.max(n, 1))));
    let ab = this.free.get(size)?.pop();
    if (ab) {
      this.idle -= size;
      this.idleSet.delete(ab);
    } else {
      // allocUnsafeSlow: a backing store of exactly `size` (never a slice of Node's shared slab).
      ab = Buffer.allocUnsafeSlow(size).buffer as ArrayBuffer;
      this.made.add(ab);
    }
    return Buffer.from(ab, 0, n);
  }

  /** Only once nothing reads or writes `b` any more (nor will: no pending write holds it). */
  give(b: Uint8Array): void {
    const ab = b.buffer as ArrayBuffer;
    if (!this.made.has(ab) || this.idleSet.has(ab) || this.idle + ab.byteLength > this.keepBytes) return;
    let list = this.free.get(ab.byteLength);
    if (!list) this.free.set(ab.byteLength, (list = []));
    list.push(ab);
    this.idleSet.add(ab);
    this.idle += ab.byteLength;
  }

  /** Bytes kept idle. */
  get idleBytes(): number {
    return this.idle;
  }
}
