import { describe, expect, it } from 'vitest';
import { dedupToken, groupBatches } from '../functions/collect/index.ts';

// collect's pure parts: grouping batches into INSERTs under a row cap, and the INSERT
// deduplication token (the same set of batches must give the same token in any order).

const b = (id: string, rows: number) => ({ id, rows });
const ids = (groups: { id: string }[][]) => groups.map((g) => g.map((x) => x.id));

describe('groupBatches', () => {
  it('keeps everything in one group under the cap', () => {
    expect(ids(groupBatches([b('a', 10), b('b', 20), b('c', 30)], 100))).toEqual([['a', 'b', 'c']]);
    expect(ids(groupBatches([b('a', 50), b('b', 50)], 100))).toEqual([['a', 'b']]); // exactly the cap
  });

  it('starts a new group when the next batch would pass the cap, keeping order', () => {
    const groups = groupBatches([b('a', 40), b('b', 40), b('c', 40), b('d', 40), b('e', 10)], 100);
    expect(ids(groups)).toEqual([['a', 'b'], ['c', 'd', 'e']]);
    for (const g of groups) expect(g.reduce((n, x) => n + x.rows, 0)).toBeLessThanOrEqual(100);
  });

  it('puts a batch larger than the cap in a group of its own', () => {
    expect(ids(groupBatches([b('a', 10), b('big', 500), b('c', 10)], 100))).toEqual([['a'], ['big'], ['c']]);
    expect(ids(groupBatches([b('big', 500)], 100))).toEqual([['big']]);
    expect(ids(groupBatches([b('big1', 500), b('big2', 500)], 100))).toEqual([['big1'], ['big2']]);
  });

  it('loses and duplicates nothing', () => {
    const batches = Array.from({ length: 200 }, (_, i) => b(`u.0.${i}`, 1 + ((i * 37) % 113)));
    for (const cap of [1, 50, 113, 1000, 1e6]) {
      const groups = groupBatches(batches, cap);
      expect(groups.flat()).toEqual(batches);
      expect(groups.every((g) => g.length > 0)).toBe(true);
      for (const g of groups) if (g.length > 1) expect(g.reduce((n, x) => n + x.rows, 0)).toBeLessThanOrEqual(cap);
    }
  });

  it('returns no groups for no batches', () => {
    expect(groupBatches([], 100)).toEqual([]);
  });
});

describe('dedupToken', () => {
  it('does not depend on the order of the batch ids', () => {
    const t = dedupToken(['u.0.0', 'u.0.1', 'u.1.0']);
    expect(dedupToken(['u.1.0', 'u.0.0', 'u.0.1'])).toBe(t);
    expect(dedupToken(['u.0.1', 'u.1.0', 'u.0.0'])).toBe(t);
    expect(t).toMatch(/^[0-9a-f]{64}$/);
  });

  it('differs for a different set of batches', () => {
    const t = dedupToken(['u.0.0', 'u.0.1']);
    expect(dedupToken(['u.0.0'])).not.toBe(t);
    expect(dedupToken(['u.0.0', 'u.0.2'])).not.toBe(t);
    expect(dedupToken(['u.0.0', 'u.0.1', 'u.0.2'])).not.toBe(t);
  });

  it('does not reorder the caller\'s array', () => {
    const list = ['c', 'a', 'b'];
    dedupToken(list);
    expect(list).toEqual(['c', 'a', 'b']);
  });
});
