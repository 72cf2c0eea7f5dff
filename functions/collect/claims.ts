// The batches this collect process is inserting, or has just inserted, shared by its pull loops.
// After a NATS crash the same batch can arrive twice at once: redelivered while its first delivery
// is still being inserted, or republished by a retried ingest part once the stream has forgotten
// its msg ids — in one fetch, or in two loops. Neither existing guard sees that: the ledger
// (collected_batches) only shows committed inserts, and the INSERT's dedup token only matches an
// identical group. Reproduced by test/nats-crash.test.ts (up to 1,838 rows stored twice).

export interface Claim<T> {
  /** To insert now: the first copy of each id that no loop here is inserting or has stored. */
  mine: T[];
  /** Being inserted by another loop: claim them again once `settled` (stored ones drop out). */
  busy: T[];
  settled: Promise<void>;
  /** After inserting `mine`: the ids now stored (the others may be claimed again). */
  finish(stored: Iterable<string>): void;
}

export class InsertClaims {
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Ids stored by this process lately: the ledger query of a concurrent call may predate them. */
  private readonly recent = new Set<string>();

  constructor(private readonly capacity = 100_000) {}

  /** Synchronous on purpose: checking and claiming with no await in between makes it atomic. */
  claim<T extends { id: string }>(batches: T[]): Claim<T> {
    const mine: T[] = [];
    const busy: T[] = [];
    const waits: Promise<void>[] = [];
    const seen = new Set<string>();
    for (const b of batches) {
      if (seen.has(b.id) || this.recent.has(b.id)) continue;
      seen.add(b.id);
      const other = this.inFlight.get(b.id);
      if (other) {
        busy.push(b);
        waits.push(other);
      } else mine.push(b);
    }
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    for (const b of mine) this.inFlight.set(b.id, done);
    return {
      mine,
      busy,
      settled: Promise.all(waits).then(() => undefined),
      finish: (stored) => {
        for (const id of stored) this.remember(id);
        for (const b of mine) if (this.inFlight.get(b.id) === done) this.inFlight.delete(b.id);
        release();
      },
    };
  }

  private remember(id: string): void {
    this.recent.add(id);
    if (this.recent.size > this.capacity) this.recent.delete(this.recent.values().next().value!);
  }
}
