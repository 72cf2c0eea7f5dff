import { describe, expect, it } from 'vitest';
import { InsertClaims } from '../functions/collect/claims.ts';

// collect's claims between its pull loops (pure logic): a batch that arrives twice at once is
// inserted once; a copy another loop is inserting waits for it and is inserted only if that failed.

const b = (id: string) => ({ id });
const ids = (xs: { id: string }[]) => xs.map((x) => x.id);
const settledYet = async (p: Promise<void>) => Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 20))]);

describe('InsertClaims', () => {
  it('takes the first copy of each batch of one fetch', () => {
    const claim = new InsertClaims().claim([b('u.1.0'), b('u.1.1'), b('u.1.0')]);
    expect(ids(claim.mine)).toEqual(['u.1.0', 'u.1.1']);
    expect(claim.busy).toEqual([]);
  });

  it('makes a second loop wait for a batch the first is inserting, then skip it once stored', async () => {
    const claims = new InsertClaims();
    const a = claims.claim([b('x'), b('y')]);
    const second = claims.claim([b('y'), b('z')]);
    expect(ids(second.mine)).toEqual(['z']);
    expect(ids(second.busy)).toEqual(['y']);
    expect(await settledYet(second.settled)).toBe(false);
    a.finish(['x', 'y']);
    expect(await settledYet(second.settled)).toBe(true);
    // Stored here lately: skipped even by a call whose ledger query predates the insert.
    const again = claims.claim([b('y'), b('x')]);
    expect([again.mine, again.busy]).toEqual([[], []]);
  });

  it('hands a batch over when the loop that claimed it could not store it', async () => {
    const claims = new InsertClaims();
    const a = claims.claim([b('x'), b('y')]);
    const second = claims.claim([b('y')]);
    a.finish(['x']); // y failed (outage, or refused)
    await second.settled;
    const retry = claims.claim(second.busy);
    expect(ids(retry.mine)).toEqual(['y']);
  });

  it('forgets the oldest stored ids beyond its capacity', () => {
    const claims = new InsertClaims(2);
    claims.claim([b('a'), b('b'), b('c')]).finish(['a', 'b', 'c']);
    expect(ids(claims.claim([b('a'), b('b'), b('c')]).mine)).toEqual(['a']);
  });
});
