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
