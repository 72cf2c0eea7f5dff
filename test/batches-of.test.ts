import { describe, expect, it } from 'vitest';
import { batchesOf } from '../shared/worker.ts';

// batchesOf is pure logic over an async iterator: a scripted source stands in for the puller
// (the puller and the worker loop run against a real nats-server in pull.test.ts and worker.test.ts).

/** Yields `first` at once, then `second` after `laterMs`, then stays open (as a puller does). */
async function* source(first: number, second: number, laterMs: number): AsyncGenerator<number> {
  yield first;
  await new Promise((r) => setTimeout(r, laterMs));
  yield second;
  await new Promise(() => undefined);
}

/** Yields every item at once, then stays open. */
async function* ready(items: number[]): AsyncGenerator<number> {
  yield* items;
  await new Promise(() => undefined);
}

async function timed<T>(work: Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  const value = await work;
  return { value, ms: Date.now() - t0 };
}

describe('batchesOf', () => {
  it('waits up to waitMs for more messages', async () => {
    const { value, ms } = await timed(batchesOf(source(1, 2, 50), 10, 400).next());
    expect(value.value).toEqual([1, 2]);
    expect(ms).toBeGreaterThanOrEqual(390);
  });

  it('hands a batch over once it holds max messages or max weight', async () => {
    const full = await timed(batchesOf(source(1, 2, 10), 2, 5000).next());
    expect(full.value.value).toEqual([1, 2]);
    const heavy = await timed(batchesOf(source(7, 8, 10), 10, 5000, { of: (n) => n, max: 7 }).next());
    expect(heavy.value.value).toEqual([7]);
    expect(full.ms + heavy.ms).toBeLessThan(1000);
  });

  it('never goes over the max weight: the message that would starts the next batch', async () => {
    const batches = batchesOf(ready([3, 3, 3, 9, 1]), 10, 100, { of: (n) => n, max: 7 });
    const got: number[][] = [];
    for (let i = 0; i < 4; i++) got.push((await batches.next()).value);
    // 3 + 3 + 3 would be 9: the third 3 waits; 9 alone is heavier than max and goes alone.
    expect(got).toEqual([[3, 3], [3], [9], [1]]);
  });

  it('does not wait when no more messages may come, and carries the next one into the following batch', async () => {
    const batches = batchesOf(source(1, 2, 150), 10, 2000, undefined, () => false);
    const first = await timed(batches.next());
    expect(first.value.value).toEqual([1]);
    expect(first.ms).toBeLessThan(120);
    expect((await batches.next()).value).toEqual([2]);
  });

  it('asks moreMayCome about the batch so far', async () => {
    // Collect's batches of upload data stop waiting once ingest is idle; others wait on.
    const onlyOdd = (batch: number[]) => !batch.every((n) => n % 2 === 1);
    const odd = await timed(batchesOf(ready([1, 3]), 10, 2000, undefined, onlyOdd).next());
    expect(odd.value.value).toEqual([1, 3]);
    expect(odd.ms).toBeLessThan(500);
    const mixed = await timed(batchesOf(ready([1, 2]), 10, 300, undefined, onlyOdd).next());
    expect(mixed.value.value).toEqual([1, 2]);
    expect(mixed.ms).toBeGreaterThanOrEqual(290);
  });

  it('keeps waiting while more may come, and stops once that changes', async () => {
    let more = true;
    const waiting = await timed(batchesOf(source(1, 2, 100), 10, 400, undefined, () => more).next());
    expect(waiting.value.value).toEqual([1, 2]);
    expect(waiting.ms).toBeGreaterThanOrEqual(390);
    more = true;
    setTimeout(() => (more = false), 100);
    const stopped = await timed(batchesOf(source(3, 4, 5000), 10, 2000, undefined, () => more).next());
    expect(stopped.value.value).toEqual([3]);
    expect(stopped.ms).toBeGreaterThanOrEqual(90);
    expect(stopped.ms).toBeLessThan(600);
  });
});
