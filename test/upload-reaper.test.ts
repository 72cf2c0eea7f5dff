import { connect, type KV, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimUpload, type ClaimContext } from '../functions/upload/claim.ts';
import { activeKey, keysOf, partObject } from '../functions/upload/parts.ts';
import { reapIfExpired, sweep } from '../functions/upload/reaper.ts';
import { parseEnv } from '../shared/config.ts';
import { BUCKETS, STREAMS } from '../shared/names.ts';
import { newObjectNuid, objectStream, putObject } from '../shared/object-store.ts';
import { provisionEnv, provisionNats } from '../shared/provision.ts';
import { uploadRecord, type UploadRecord } from '../shared/schemas.ts';
import { bucketState } from './support/object-store-state.ts';
import { startNats, type NatsServer } from './support/servers.ts';

// Ending an interrupted upload, on a real nats-server: what the reaper keeps (announced parts,
// the announcement in flight), what it removes (unannounced objects, chunks without a meta), that
// only one of several reapers wins, and how claims of the same Idempotency-Key race.

const LEASE_MS = 1000;
const COLUMNS = ['timestamp', 'metric_name', 'gpu_id', 'device', 'uuid', 'modelName', 'Hostname', 'container', 'pod', 'namespace', 'value', 'labels_raw'];

let server: NatsServer;
let nc: NatsConnection;
let kv: KV;

beforeAll(async () => {
  server = await startNats();
  nc = await connect({ servers: server.url });
  await provisionNats(nc, parseEnv(provisionEnv, {}));
  kv = await nc.jetstream().views.kv(BUCKETS.status);
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

const text = (s: string) => [Buffer.from(s)];
async function get(id: string): Promise<UploadRecord> {
  return uploadRecord.parse((await kv.get(id))!.json());
}
/** Announcements on the uploads stream for an upload (their CloudEvent ids). */
async function announced(id: string): Promise<string[]> {
  const jsm = await nc.jetstreamManager();
  const info = await jsm.streams.info(STREAMS.uploads);
  const ids: string[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(STREAMS.uploads, { seq }).catch(() => undefined);
    const ce = m?.header.get('ce-id');
    if (ce?.startsWith(id)) ids.push(ce);
  }
  return ids;
}

/** A receiving upload as a killed receiver leaves it: parts 0 announced, 1 being announced, 2 stored, 3 half written. */
async function interrupted(id: string, leaseUntil: number): Promise<{ nuid: string }> {
  for (const part of [0, 1, 2]) await putObject(nc, BUCKETS.objects, partObject(id, 1, part), text(`row ${part}\n`));
  const nuid = newObjectNuid();
  await nc.jetstream().publish(`$O.${BUCKETS.objects}.C.${nuid}`, Buffer.from('half a part'));
  const record: UploadRecord = {
    id,
    state: 'receiving',
    bytes: 30,
    createdAt: new Date().toISOString(),
    restamp: false,
    attempt: 1,
    lease: { owner: 'killed/1', until: leaseUntil },
    columns: COLUMNS,
    partBytes: 1024,
    stored: 3,
    announced: 1,
    announcing: { part: 1, firstLine: 3, bytes: 6 },
    writing: { part: 3, nuid },
  };
  await kv.put(activeKey(id), String(Date.now()));
  await kv.put(id, JSON.stringify(record));
  return { nuid };
}

describe('reaping an interrupted upload', () => {
  it('leaves an upload under a live lease alone', async () => {
    const id = '00000000-0000-4000-8000-000000000001';
    await interrupted(id, Date.now() + 60_000);
    expect((await reapIfExpired(nc, kv, id, LEASE_MS))?.state).toBe('receiving');
    expect((await get(id)).state).toBe('receiving');
  });

  it('fails it with a reason, keeps announced parts (re-announcing the one in flight), deletes the rest, purges orphan chunks', async () => {
    const id = '00000000-0000-4000-8000-000000000002';
    const { nuid } = await interrupted(id, Date.now() - 1);
    // Several replicas at once: one compare-and-set wins, all see the failed record.
    const results = await Promise.all([1, 2, 3].map(() => reapIfExpired(nc, kv, id, LEASE_MS)));
    for (const r of results) expect(r?.state).toBe('failed');
    const record = await get(id);
    expect(record).toMatchObject({ state: 'failed', parts: 2, partial: true });
    expect(record.error).toMatch(/interrupted: the replica receiving it stopped renewing its lease/);
    expect(record.error).toMatch(/2 complete part\(s\) received before that are kept and ingested/);
    expect(record.lease).toBeUndefined();
    expect(await announced(id)).toEqual([`${id}.part.1`]); // published once, however many reapers
    const state = await bucketState(nc, BUCKETS.objects);
    const live = state.live.map((o) => o.name).filter((n) => n.startsWith(id));
    expect(live.sort()).toEqual([partObject(id, 1, 0), partObject(id, 1, 1)]);
    expect(state.orphanChunks).not.toContain(`$O.${BUCKETS.objects}.C.${nuid}`);
    expect(await keysOf(nc, activeKey(id))).toEqual([]);
  });

  it('a sweep finishes a release cut short, and drops stale keys of uploads never created', async () => {
    const id = '00000000-0000-4000-8000-000000000003';
    const { nuid } = await interrupted(id, Date.now() - 1);
    // The reaper died after writing `failed` (release not done, active key still there).
    const r = await get(id);
    await kv.put(id, JSON.stringify({ ...r, state: 'failed', lease: undefined, error: 'x', parts: 2 }));
    const ghost = '00000000-0000-4000-8000-000000000004';
    const young = '00000000-0000-4000-8000-000000000005';
    await kv.put(activeKey(ghost), String(Date.now() - 10 * LEASE_MS));
    await kv.put(activeKey(young), String(Date.now()));
    await sweep(nc, kv, LEASE_MS);
    const active = await keysOf(nc, 'active.*');
    expect(active).not.toContain(activeKey(id));
    expect(active).not.toContain(activeKey(ghost));
    expect(active).toContain(activeKey(young)); // its record may be about to be written
    const state = await bucketState(nc, BUCKETS.objects);
    expect(state.live.map((o) => o.name).filter((n) => n.startsWith(id)).sort()).toEqual([partObject(id, 1, 0), partObject(id, 1, 1)]);
    expect(state.orphanChunks).not.toContain(`$O.${BUCKETS.objects}.C.${nuid}`);
    const si = await (await nc.jetstreamManager()).streams.info(objectStream(BUCKETS.objects), { subjects_filter: `$O.${BUCKETS.objects}.C.${nuid}` });
    expect(si.state.subjects?.[`$O.${BUCKETS.objects}.C.${nuid}`] ?? 0).toBe(0);
  });
});

describe('claims of one Idempotency-Key', () => {
  const ctx = (): ClaimContext => ({ nc, kv, owner: 'test/1', leaseMs: LEASE_MS, status: async () => undefined });
  const request = { key: 'race-key', token: 'tok', declared: { bytes: 100, encoding: 'identity' }, restamp: false, partBytes: 1024 };

  it('concurrent first uses: one receives, the others get 409, all for the same upload id', async () => {
    const results = await Promise.allSettled([1, 2, 3, 4].map(() => claimUpload(ctx(), request)));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    const lease = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof claimUpload>>>).value;
    expect(lease.kind).toBe('receive');
    const id = lease.kind === 'receive' ? lease.lease.record.id : '';
    for (const r of results.filter((x) => x.status === 'rejected')) {
      expect((r as PromiseRejectedResult).reason).toMatchObject({ status: 409, message: expect.stringContaining(id) });
    }
  });

  it('a retry after the lease ran out restarts the upload under the same id as attempt 2', async () => {
    const first = await claimUpload(ctx(), { ...request, key: 'restart-key' });
    expect(first.kind).toBe('receive');
    const id = first.kind === 'receive' ? first.lease.record.id : '';
    await new Promise((r) => setTimeout(r, LEASE_MS + 50)); // nobody renews it: the receiver "died"
    const second = await claimUpload(ctx(), { ...request, key: 'restart-key' });
    expect(second.kind === 'receive' && second.lease.record).toMatchObject({ id, attempt: 2, state: 'receiving' });
    const other = await claimUpload(ctx(), { ...request, key: 'restart-key', token: 'another-token' });
    expect(other.kind === 'receive' && other.lease.record.id).not.toBe(id);
  });
});

describe('listing status keys (keysOf)', () => {
  it('lists the live keys of a filter, skips deleted ones, and answers at once when none match', async () => {
    const id = '00000000-0000-4000-8000-00000000c0d1';
    for (const n of [0, 1, 2]) await kv.put(`${id}.part.${n}`, '{}');
    await kv.delete(`${id}.part.1`);
    expect((await keysOf(nc, `${id}.part.*`)).sort()).toEqual([`${id}.part.0`, `${id}.part.2`]);
    const t0 = Date.now();
    expect(await keysOf(nc, '00000000-0000-4000-8000-00000000ffff.part.*')).toEqual([]);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('ends, with each key it saw once, while the keys it lists are being deleted and rewritten', async () => {
    const id = '00000000-0000-4000-8000-00000000c0d2';
    const names = Array.from({ length: 2000 }, (_, n) => `${id}.part.${n}`);
    await Promise.all(names.map((k) => kv.put(k, '{}')));
    const deleting = Promise.all(names.map((k, i) => (i % 2 ? kv.delete(k) : kv.put(k, '{"state":"done"}'))));
    const t0 = Date.now();
    const listed = await keysOf(nc, `${id}.part.*`, 1000);
    await deleting;
    // Whatever it saw before the deletes: a subset of the keys, each once, in bounded time.
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(new Set(listed).size).toBe(listed.length);
    for (const k of listed) expect(names).toContain(k);
    expect((await keysOf(nc, `${id}.part.*`)).sort()).toEqual(names.filter((_, i) => i % 2 === 0).sort());
  });
});
