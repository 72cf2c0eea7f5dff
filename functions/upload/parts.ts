import { CloudEvent } from 'cloudevents';
import type { JetStreamClient, KV } from 'nats';
import { NATS, toNatsHeaders } from '../../shared/cloudevents-nats.ts';
import { EVENT_TYPES, SUBJECTS } from '../../shared/names.ts';
import type { UploadRecord, UploadedPart } from '../../shared/schemas.ts';

// Names of an upload's parts and KV keys, and the announcement of a stored part. Object names
// carry the attempt, so a restarted upload never touches the objects of an earlier attempt
// (which may still be being ingested); part numbers, and with them batch ids, stay the same.

export const SOURCE = '/functions/upload';

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

/** KV keys matching a filter, collected before use: awaiting inside nats.js's keys() iteration loses keys. */
export async function keysOf(kv: KV, filter: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const k of await kv.keys(filter)) keys.push(k);
  return keys;
}
