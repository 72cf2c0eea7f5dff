import { createHash, randomUUID } from 'node:crypto';
import type { KV, NatsConnection } from 'nats';
import { HttpError } from '../../shared/http.ts';
import { uploadRecord, type UploadRecord } from '../../shared/schemas.ts';
import { LeasedRecord, isWrongRevision } from './lease.ts';
import { activeKey, forget, idempotencyKvKey, keysOf } from './parts.ts';
import { reapIfExpired, releaseAttempt } from './reaper.ts';
import type { UploadStatus } from './schemas.ts';

// Which upload a request receives into. Without an Idempotency-Key: a new one. With a key
// (scoped to the caller's bearer token: the KV holds a hash of both, never the token), the same
// upload every time: new on first use; restarted under the same id (next attempt) when it failed
// or was interrupted; answered from its status, body unread, when it was received; 409 while
// another request is receiving it. Every transition is a compare-and-set on the KV record, so
// concurrent retries cannot both win.

export interface ClaimRequest {
  key?: string;
  token: string;
  declared: { bytes?: number; encoding: string };
  restamp: boolean;
  partBytes: number;
}

export type Claim =
  | { kind: 'receive'; lease: LeasedRecord }
  | { kind: 'replay'; record: UploadRecord };

export interface ClaimContext {
  nc: NatsConnection;
  kv: KV;
  owner: string;
  leaseMs: number;
  /** The upload's current status (to tell a received upload that later failed in ingest). */
  status: (id: string) => Promise<UploadStatus | undefined>;
}

const inProgress = (id: string) =>
  new HttpError(409, 'upload_in_progress', `upload ${id} with this Idempotency-Key is being received by another request; retry once that one has ended`);

/** The upload id a key maps to, created on first use. */
async function idFor(kv: KV, key: string, token: string): Promise<string> {
  const hash = createHash('sha256').update(token).update('\n').update(key).digest('hex');
  const mapping = idempotencyKvKey(hash);
  const fresh = randomUUID();
  try {
    await kv.create(mapping, fresh);
    return fresh;
  } catch (e) {
    if (!isWrongRevision(e)) throw e;
  }
  const existing = (await kv.get(mapping))?.string();
  if (!existing) throw inProgress('(new)');
  return existing;
}

function sameBody(r: UploadRecord, declared: ClaimRequest['declared']): boolean {
  const before = r.declared;
  if (!before || before.encoding !== declared.encoding) return true;
  return before.bytes === undefined || declared.bytes === undefined || before.bytes === declared.bytes;
}

/** Finds or creates the upload this request receives into, and takes its lease. */
export async function claimUpload(ctx: ClaimContext, req: ClaimRequest): Promise<Claim> {
  const { kv } = ctx;
  const id = req.key === undefined ? randomUUID() : await idFor(kv, req.key, req.token);
  const attempt = (previous?: UploadRecord): UploadRecord =>
    LeasedRecord.leased(
      {
        id,
        state: 'receiving',
        bytes: 0,
        // One receipt time per upload: a restart stores rows identical to the first attempt's.
        createdAt: previous?.createdAt ?? new Date().toISOString(),
        restamp: req.restamp,
        attempt: (previous?.attempt ?? 0) + 1,
        partBytes: previous?.partBytes ?? req.partBytes,
        stored: 0,
        announced: 0,
        declared: req.declared,
      },
      ctx.owner,
      ctx.leaseMs,
    );
  const take = async (record: UploadRecord, write: () => Promise<number>): Promise<Claim> => {
    // The sweep finds uploads in progress by this key; written first, so none is missed.
    await ctx.kv.put(activeKey(id), String(Date.now()));
    try {
      return { kind: 'receive', lease: new LeasedRecord(kv, record, await write(), ctx.leaseMs, ctx.owner) };
    } catch (e) {
      if (isWrongRevision(e)) throw inProgress(id);
      throw e;
    }
  };

  const entry = await kv.get(id);
  if (!entry || entry.operation !== 'PUT') {
    const record = attempt();
    return take(record, () => kv.create(id, JSON.stringify(record)));
  }
  let previous = uploadRecord.parse(entry.json());
  let revision = entry.revision;
  if (!sameBody(previous, req.declared)) {
    throw new HttpError(422, 'idempotency_key_reused', `this Idempotency-Key belongs to upload ${id}, whose request body had a different length; use a new key for a different file`);
  }
  if (previous.state === 'receiving') {
    const now = await reapIfExpired(ctx.nc, kv, id, ctx.leaseMs);
    if (!now || now.state === 'receiving') throw inProgress(id);
    previous = now;
    revision = (await kv.get(id))!.revision;
  }
  if (previous.state === 'received' && (await ctx.status(id))?.state !== 'failed') return { kind: 'replay', record: previous };
  // Failed (in upload or in ingest): restart under the same id. What the failed attempt held is
  // released first, and failed part results are cleared; done ones stay (the retry's batches of
  // those parts carry the same ids and are dropped as duplicates).
  if (previous.state === 'failed') await releaseAttempt(ctx.nc, previous);
  for (const key of await keysOf(ctx.nc, `${id}.part.*`)) {
    const result = (await kv.get(key))?.json<{ state?: string }>();
    if (result?.state === 'failed') await forget(kv, key);
  }
  const record = attempt(previous);
  return take(record, () => kv.update(id, JSON.stringify(record), revision));
}
