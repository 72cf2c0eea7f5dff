import { CloudEvent } from 'cloudevents';
import { DeliverPolicy, type JetStreamClient, type KV, type NatsConnection } from 'nats';
import { NATS, toNatsHeaders } from '../../shared/cloudevents-nats.ts';
import { BUCKETS, EVENT_SOURCES, EVENT_TYPES, SUBJECTS, kvStream, kvSubject } from '../../shared/names.ts';
import type { UploadRecord, UploadedPart } from '../../shared/schemas.ts';

// Names of an upload's parts and KV keys, and the announcement of a stored part. Object names
// carry the attempt, so a restarted upload never touches the objects of an earlier attempt
// (which may still be being ingested); part numbers, and with them batch ids, stay the same.

export const SOURCE = EVENT_SOURCES.upload;

export const partObject = (id: string, attempt: number, part: number) => `${id}/a${attempt}/part-${String(part).padStart(5, '0')}`;

/** KV keys in the status bucket besides `<id>` (the record) and `<id>.part.<n>` (ingest results). */
export const activeKey = (id: string) => `active.${id}`;
export const ACTIVE_KEYS = 'active.*';
export const idempotencyKvKey = (hash: string) => `idem.${hash}`;

export interface PartInfo {
  part: number;
  firstLine: number;
  bytes: number;
}

/**
 * Publishes the csv.uploaded event of a stored part. Its message id is fixed per attempt and
 * part, so publishing it again (a retry, or whoever finishes an interrupted upload) is dropped
 * by the stream's duplicate window.
 */
export async function announcePart(js: JetStreamClient, record: UploadRecord, p: PartInfo): Promise<void> {
  const data: UploadedPart = {
    uploadId: record.id,
    part: p.part,
    object: partObject(record.id, record.attempt, p.part),
    header: record.columns ?? [],
    firstLine: p.firstLine,
    bytes: p.bytes,
    restamp: record.restamp,
    receivedAt: Date.parse(record.createdAt),
  };
  const id = record.attempt === 1 ? `${record.id}.part.${p.part}` : `${record.id}.part.${p.part}.a${record.attempt}`;
  const event = new CloudEvent({ id, source: SOURCE, type: EVENT_TYPES.uploaded, subject: record.id, datacontenttype: 'application/json', data });
  const msg = NATS.binary(event);
  await js.publish(SUBJECTS.uploaded, msg.body, { headers: toNatsHeaders(msg), msgID: event.id });
}

/** Deletes a KV key; a key that is already gone is fine. */
export const forget = (kv: KV, key: string) => kv.delete(key).catch(() => undefined);

/**
 * The keys of the status bucket matching a filter whose last entry is a value (not a delete or
 * purge). Not nats.js's kv.keys(): it ends only when a delivered entry reports nothing pending,
 * and has no deadline. A listing of this bucket was seen to hang in test/upload-lifecycle.test.ts
 * (about 1 run in 12; the cause was not pinned down, a stress of concurrent deletes and rewrites
 * did not reproduce it); in the reaper that would stop every later sweep. Here each fetch waits
 * at most `waitMs` (nats.js accepts 1 s or more), and an empty fetch ends the listing.
 */
export async function keysOf(nc: NatsConnection, filter: string, waitMs = 2000): Promise<string[]> {
  const stream = kvStream(BUCKETS.status);
  const prefix = kvSubject(BUCKETS.status, '');
  const si = await (await nc.jetstreamManager()).streams.info(stream, { subjects_filter: prefix + filter });
  if (Object.keys(si.state.subjects ?? {}).length === 0) return [];
  const consumer = await nc.jetstream().consumers.get(stream, { filterSubjects: prefix + filter, deliver_policy: DeliverPolicy.LastPerSubject, headers_only: true });
  const keys: string[] = [];
  for (let done = false; !done; ) {
    const batch = await consumer.fetch({ max_messages: 1000, expires: waitMs });
    done = true;
    for await (const m of batch) {
      const op = m.headers?.get('KV-Operation');
      if (op !== 'DEL' && op !== 'PURGE') keys.push(m.subject.slice(prefix.length));
      done = m.info.pending === 0;
      if (done) break;
    }
  }
  return keys;
}
