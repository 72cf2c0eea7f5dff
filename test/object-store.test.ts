import { createHash, randomBytes } from 'node:crypto';
import { DiscardPolicy, connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sharedPool } from '../shared/buffer-pool.ts';
import { getObject, objectStream, putObject } from '../shared/object-store.ts';
import { bucketState } from './support/object-store-state.ts';
import { startNats, type NatsServer } from './support/servers.ts';

// putObject fills its chunks in pooled buffers: objects larger than the pool, puts at the same
// time and a put whose publish fails must all still store exactly the bytes given, with the
// digest of those bytes, on a real nats-server.

const BUCKET = 'pooltest';
const MiB = 1024 * 1024;

let server: NatsServer;
let nc: NatsConnection;

beforeAll(async () => {
  server = await startNats();
  nc = await connect({ servers: server.url });
  await nc.jetstream().views.os(BUCKET);
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

/** `bytes` in pieces of uneven sizes, none aligned to a chunk. */
function* pieces(bytes: Buffer): Generator<Buffer> {
  const sizes = [65_536, 1, 300_001, 1_048_577, 7];
  for (let pos = 0, i = 0; pos < bytes.length; i++) {
    const n = sizes[i % sizes.length];
    yield bytes.subarray(pos, pos + n);
    pos += n;
  }
}

async function read(name: string): Promise<Buffer> {
  const info = (await bucketState(nc, BUCKET)).live.find((o) => o.name === name)!;
  const out: Buffer[] = [];
  for await (const c of getObject(nc, BUCKET, info)) out.push(Buffer.from(c)); // copied: chunks are the client's buffers
  return Buffer.concat(out);
}

const digestOf = (b: Buffer) => 'SHA-256=' + createHash('sha256').update(b).digest('base64url') + '=';

describe('putObject with pooled chunk buffers', () => {
  it('stores an object larger than the pool byte for byte, with the digest of its bytes', async () => {
    const bytes = randomBytes(9 * MiB + 12_345);
    const info = await putObject(nc, BUCKET, 'big', pieces(bytes));
    expect(info).toMatchObject({ size: bytes.length, chunks: 10, digest: digestOf(bytes) });
    expect((await read('big')).equals(bytes)).toBe(true);
    // nats.js's own reader agrees (it checks the digest with its own SHA-256).
    const got = await (await nc.jetstream().views.os(BUCKET)).getBlob('big');
    expect(Buffer.from(got!).equals(bytes)).toBe(true);
  });

  it('keeps concurrent puts apart although they share the pool', async () => {
    const a = randomBytes(6 * MiB + 1);
    const b = randomBytes(7 * MiB - 1);
    await Promise.all([putObject(nc, BUCKET, 'a', pieces(a)), putObject(nc, BUCKET, 'b', pieces(b))]);
    expect((await read('a')).equals(a)).toBe(true);
    expect((await read('b')).equals(b)).toBe(true);
  });

  it('gives no buffer of a failed put back to the pool, and a retry stores the object', async () => {
    const jsm = await nc.jetstreamManager();
    const stream = objectStream(BUCKET);
    await jsm.streams.purge(stream);
    const config = (await jsm.streams.info(stream)).config;
    // Room for about 3 chunks: the 4th publish is refused.
    await jsm.streams.update(stream, { ...config, max_bytes: 3.5 * MiB, discard: DiscardPolicy.New });
    const pool = sharedPool(MiB, 0);
    const given: Buffer[] = [];
    const give = pool.give;
    pool.give = (b) => (given.push(b), give.call(pool, b));
    const bytes = randomBytes(8 * MiB);
    try {
      await expect(putObject(nc, BUCKET, 'retried', pieces(bytes))).rejects.toThrow();
      await new Promise((r) => setTimeout(r, 500)); // the publishes still in flight settle
    } finally {
      pool.give = give;
    }
    // Only the acknowledged chunks' buffers (at most the 3 that fit) went back.
    expect(given.length).toBeLessThanOrEqual(3);
    expect((await bucketState(nc, BUCKET)).orphanChunks).toEqual([]); // purged

    await jsm.streams.update(stream, { ...config, max_bytes: -1 });
    const info = await putObject(nc, BUCKET, 'retried', pieces(bytes));
    expect(info.digest).toBe(digestOf(bytes));
    expect((await read('retried')).equals(bytes)).toBe(true);
  });
});
