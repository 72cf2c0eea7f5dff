import { describe, expect, it } from 'vitest';
import { BufferPool, sharedPool } from '../shared/buffer-pool.ts';

// The reuse rules putObject relies on: a buffer is handed out again only once given back, and a
// pool keeps no more idle buffers than asked for.

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
