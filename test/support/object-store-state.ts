import type { NatsConnection } from 'nats';
import { objectStream, type ObjectInfo } from '../../shared/object-store.ts';

// What an object store bucket holds, read from its stream: live objects (latest meta not
// deleted) and chunk subjects that belong to no live object (orphans).

export interface BucketState {
  live: ObjectInfo[];
  /** Chunk subjects with stored messages whose nuid is not a live object's. */
  orphanChunks: string[];
}

export async function bucketState(nc: NatsConnection, bucket: string): Promise<BucketState> {
  const jsm = await nc.jetstreamManager();
  const info = await jsm.streams.info(objectStream(bucket), { subjects_filter: `$O.${bucket}.>` });
  const subjects = Object.entries(info.state.subjects ?? {}).filter(([, n]) => n > 0).map(([s]) => s);
  const live: ObjectInfo[] = [];
  for (const subject of subjects.filter((s) => s.startsWith(`$O.${bucket}.M.`))) {
    const m = await jsm.streams.getMessage(objectStream(bucket), { last_by_subj: subject });
    const meta = JSON.parse(Buffer.from(m.data).toString('utf8')) as ObjectInfo;
    if (!meta.deleted) live.push(meta);
  }
  const nuids = new Set(live.map((o) => o.nuid));
  const chunkPrefix = `$O.${bucket}.C.`;
  const orphanChunks = subjects.filter((s) => s.startsWith(chunkPrefix) && !nuids.has(s.slice(chunkPrefix.length)));
  return { live, orphanChunks };
}
