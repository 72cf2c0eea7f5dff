import type { KV } from 'nats';
import { loggerFor } from '../../shared/log.ts';
import type { UploadRecord } from '../../shared/schemas.ts';

// The status record of an upload being received, held by one replica under a lease. Every write
// is a compare-and-set on the KV revision and renews the lease; a timer renews it every third of
// its length. A write that finds another revision means another replica reaped (or restarted)
// the upload: the holder has lost it and must stop.

export class LeaseLostError extends Error {
  constructor(id: string) {
    super(`upload ${id} was taken over while it was being received (its lease ran out: the receiver stalled)`);
  }
}

/** JetStream's "wrong last sequence": a compare-and-set found another revision. */
export const isWrongRevision = (e: unknown) => (e as { api_error?: { err_code?: number } })?.api_error?.err_code === 10071;

export class LeasedRecord {
  private chain: Promise<unknown> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  lost?: LeaseLostError;

  constructor(
    private readonly kv: KV,
    readonly record: UploadRecord,
    private revision: number,
    private readonly leaseMs: number,
    private readonly owner: string,
  ) {}

  /** The record as it is written: the lease is set while receiving and dropped after. */
  static leased(record: UploadRecord, owner: string, leaseMs: number): UploadRecord {
    if (record.state === 'receiving') record.lease = { owner, until: Date.now() + leaseMs };
    else delete record.lease;
    return record;
  }

  /** Applies `change` and writes the record unless someone else wrote it since; renews the lease. */
  save(change: (r: UploadRecord) => void = () => undefined): Promise<void> {
    const write = async () => {
      if (this.lost) throw this.lost;
      change(this.record);
      LeasedRecord.leased(this.record, this.owner, this.leaseMs);
      try {
        this.revision = await this.kv.update(this.record.id, JSON.stringify(this.record), this.revision);
      } catch (e) {
        if (!isWrongRevision(e)) throw e;
        this.lost = new LeaseLostError(this.record.id);
        throw this.lost;
      }
    };
    // Writes are serialised, so each one carries the revision of the one before.
    const p = this.chain.then(write, write);
    this.chain = p.catch(() => undefined);
    return p;
  }

  startRenewing(): void {
    this.timer = setInterval(() => {
      this.save().catch((e: unknown) => {
        if (!(e instanceof LeaseLostError)) loggerFor('upload').warn({ err: e, upload_id: this.record.id }, 'lease renewal failed; retrying');
      });
    }, Math.max(100, Math.floor(this.leaseMs / 3)));
    this.timer.unref();
  }

  stopRenewing(): void {
    clearInterval(this.timer);
  }
}
