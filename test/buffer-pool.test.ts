import { describe, expect, it } from 'vitest';
import { BufferPool, SizeClassPool, sharedPool } from '../shared/buffer-pool.ts';

// The reuse rules putObject and the pull workers rely on: a buffer is handed out again only once
// given back (and once however often it is given back), and a pool keeps no more idle than asked.

describe('BufferPool', () => {
  it('hands out a given-back buffer again and keeps at most `keep` idle', () => {
    const pool = new BufferPool(1024, 1);
    const a = pool.take();
    const b = pool.take();
    expect(a).not.toBe(b);
    pool.give(a);
    pool.give(b); // beyond keep: left to the GC
    expect(pool.idle).toBe(1);
    expect(pool.take()).toBe(a);
    pool.give(Buffer.alloc(10)); // not of the pool's size
    expect(pool.idle).toBe(0);
  });

  it('is one per size in a process, keeping the most idle buffers any user asked for', () => {
    const pool = sharedPool(4096, 1);
    expect(sharedPool(4096, 3)).toBe(pool);
    expect(pool.keep).toBe(3);
    expect(sharedPool(4096, 2).keep).toBe(3);
  });
});

describe('SizeClassPool', () => {
  it('hands out views of the size asked for, backed by the next power of two, and reuses them once given back', () => {
    const pool = new SizeClassPool(1024 * 1024);
    const a = pool.take(50_000);
    expect(a.length).toBe(50_000);
    expect(a.buffer.byteLength).toBe(65_536);
    expect(pool.take(10).buffer.byteLength).toBe(4096); // the smallest class
    pool.give(a);
    pool.give(a); // twice: still one idle buffer, never handed to two takers
    expect(pool.idleBytes).toBe(65_536);
    const b = pool.take(40_000);
    expect(b.buffer).toBe(a.buffer);
    expect(b.length).toBe(40_000);
    expect(pool.take(40_000).buffer).not.toBe(a.buffer);
  });

  it('keeps at most keepBytes idle and ignores buffers it did not make', () => {
    const pool = new SizeClassPool(100_000);
    const [a, b] = [pool.take(60_000), pool.take(60_000)];
    pool.give(a);
    pool.give(b); // 2 × 64 KiB would exceed the 100,000 bytes: left to the GC
    expect(pool.idleBytes).toBe(65_536);
    pool.give(Buffer.allocUnsafeSlow(65_536));
    expect(pool.idleBytes).toBe(65_536);
    const big = pool.take(20 * 1024 * 1024); // above maxSize: a plain buffer, never kept
    expect(big.buffer.byteLength).toBe(20 * 1024 * 1024);
    pool.give(big);
    expect(pool.idleBytes).toBe(65_536);
  });
});
