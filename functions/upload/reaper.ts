import type { KV, NatsConnection } from 'nats';
import { loggerFor } from '../../shared/log.ts';
import { BUCKETS } from '../../shared/names.ts';
import { deleteObject, purgeChunks } from '../../shared/object-store.ts';
import { uploadRecord, type UploadRecord } from '../../shared/schemas.ts';
import { isWrongRevision } from './lease.ts';
import { ACTIVE_KEYS, activeKey, announcePart, forget, keysOf, partObject } from './parts.ts';

// Ending uploads that did not finish. Whoever ends one — its receiver on an error, or any upload
// replica once the receiver's lease ran out — writes `failed` with a reason (compare-and-set, so
// one of them does), then releases the attempt: the announcement that was in flight is published
// again (deduplicated), objects never announced are deleted, and chunks written without a meta
// are purged. Announced parts are kept: they are complete, line-aligned sets of rows, ingested
// and counted in the status, which marks the upload `partial`. The `active.<id>` key exists
// until that release is done, so a release cut short is finished by the next sweep.

const log = loggerFor('upload');

/** Parts kept when an upload fails now: those announced, and the one whose announcement was in flight. */
export const keptParts = (r: UploadRecord) => Math.max(r.announced, r.announcing ? r.announcing.part + 1 : 0);

/** The record as `failed`: the reason, the parts kept, and the lease dropped. */
export function failedRecord(r: UploadRecord, reason: string): UploadRecord {
  const kept = keptParts(r);
  const note = kept > 0 ? ` (${kept} complete part(s) received before that are kept and ingested: the upload is partial; retry with the same Idempotency-Key to store the rest)` : '';
  const { lease: _lease, ...rest } = r;
  return { ...rest, state: 'failed', error: reason + note, parts: kept, partial: kept > 0 || undefined };
}

/** Frees what an ended attempt held (idempotent: safe to repeat, from any replica). */
export async function releaseAttempt(nc: NatsConnection, r: UploadRecord): Promise<void> {
  if (r.announcing) await announcePart(nc.jetstream(), r, r.announcing);
  const kept = keptParts(r);
  const written = Math.max(r.stored, r.writing ? r.writing.part + 1 : 0);
  for (let part = kept; part < written; part++) await deleteObject(nc, BUCKETS.objects, partObject(r.id, r.attempt, part));
  if (r.writing) await purgeChunks(nc, BUCKETS.objects, r.writing.nuid);
}

const leaseExpired = (r: UploadRecord, now = Date.now()) => r.state === 'receiving' && (r.lease?.until ?? 0) < now;

/**
 * Fails the upload if it is being received under an expired lease, and releases it.
 * Returns the record as it is afterwards (undefined when there is none).
 */
export async function reapIfExpired(nc: NatsConnection, kv: KV, id: string, leaseMs: number): Promise<UploadRecord | undefined> {
  const entry = await kv.get(id);
  if (!entry || entry.operation !== 'PUT') return undefined;
  const record = uploadRecord.parse(entry.json());
  if (!leaseExpired(record)) return record;
  const failed = failedRecord(record, `the upload was interrupted: the replica receiving it stopped renewing its lease (UPLOAD_LEASE_MS = ${leaseMs} ms)`);
  try {
    await kv.update(id, JSON.stringify(failed), entry.revision);
  } catch (e) {
    // Renewed or reaped by someone else meanwhile: theirs is the current record.
    if (!isWrongRevision(e)) throw e;
    const now = await kv.get(id);
    return now && now.operation === 'PUT' ? uploadRecord.parse(now.json()) : undefined;
  }
  log.warn({ upload_id: id, owner: record.lease?.owner, kept_parts: failed.parts }, 'reaped an interrupted upload');
  await releaseAttempt(nc, failed);
  await forget(kv, activeKey(id));
  return failed;
}

/** One pass over the uploads in progress: reap expired ones, finish releases cut short. */
export async function sweep(nc: NatsConnection, kv: KV, leaseMs: number): Promise<void> {
  const ids = (await keysOf(nc, ACTIVE_KEYS)).map((key) => key.slice(activeKey('').length));
  for (const id of ids) {
    try {
      const record = await reapIfExpired(nc, kv, id, leaseMs);
      if (record?.state === 'receiving') continue;
      if (!record) {
        // The key is written just before a new record: leave it to a lease's length.
        const since = Number((await kv.get(activeKey(id)))?.string());
        if (Date.now() - since < leaseMs) continue;
      } else if (record.state === 'failed') await releaseAttempt(nc, record);
      await forget(kv, activeKey(id));
    } catch (e) {
      log.warn({ err: e, upload_id: id }, 'sweep: could not end an upload; the next sweep retries');
    }
  }
}

/** Sweeps every `intervalMs` until stopped (each upload replica runs one). */
export function startReaper(getNats: () => Promise<NatsConnection>, opts: { leaseMs: number; intervalMs: number }): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    getNats()
      .then(async (nc) => sweep(nc, await nc.jetstream().views.kv(BUCKETS.status), opts.leaseMs))
      .catch((e: unknown) => log.warn({ err: e }, 'sweep failed; the next one retries'))
      .finally(() => (running = false));
  }, opts.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
