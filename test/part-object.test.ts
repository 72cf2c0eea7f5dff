import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CloudEvent } from 'cloudevents';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseEnv } from '../shared/config.ts';
import { BUCKETS, STREAMS } from '../shared/names.ts';
import { objectInfo, putObject } from '../shared/object-store.ts';
import { decompressPart, isCompressedPart } from '../shared/part-object.ts';
import { partResult, type UploadedPart } from '../shared/schemas.ts';
import { zstdCompress, zstdDecompress, zstdDecompressInto, zstdReady } from '../shared/zstd.ts';
import { ingestEnv } from '../functions/ingest/config.ts';
import { createIngestHandler } from '../functions/ingest/index.ts';
import { repoRoot, startStack, type Stack } from './local/stack.ts';
import { decodeSampleBatch } from './support/batch.ts';
import { fixtureRows } from './support/fixtures.ts';

// Upload parts cross the object store as one zstd frame each (shared/part-object.ts): the stored
// object is marked, much smaller than the part, readable by nats.js's own object store client
// (digest included), and inflates to exactly the part. Ingest still reads parts stored before
// (no header) as they are, and fails, not retries, a part whose frame is not the announced part.

const FIXTURE = readFileSync(join(repoRoot, 'test', 'fixtures', 'dcgm_metrics_20250718_134233.csv'));
const HEADER_END = FIXTURE.indexOf(10) + 1;
const HEADER = FIXTURE.subarray(0, HEADER_END - 1).toString('utf8').split(',');
const BODY = FIXTURE.subarray(HEADER_END);

let stack: Stack;
let nc: NatsConnection;

beforeAll(async () => {
  stack = await startStack({ ingestWorkers: 0, collectWorkers: 0, httpFunctions: ['upload'] });
  nc = await connect({ servers: stack.nats.url });
  await zstdReady();
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await stack?.stop();
}, 60_000);

const ingest = () => createIngestHandler(parseEnv(ingestEnv, { NATS_URL: stack.nats.url }), async () => nc);

function partEvent(uploadId: string, object: string, bytes: number): CloudEvent<UploadedPart> {
  return new CloudEvent<UploadedPart>({
    id: `${uploadId}.part.0`,
    source: '/test/part-object',
    type: 'com.gputelemetry.csv.uploaded',
    data: { uploadId, part: 0, object, header: HEADER, firstLine: 2, bytes, restamp: false, receivedAt: Date.now() },
  });
}

async function resultOf(uploadId: string) {
  const kv = await nc.jetstream().views.kv(BUCKETS.status);
  return partResult.parse((await kv.get(`${uploadId}.part.0`))?.json());
}

describe('compressed part objects', () => {
  it('stores an uploaded part as one marked zstd frame that nats.js reads and that inflates to the part', async () => {
    const res = await fetch(`${stack.uploadUrl}/api/v1/uploads`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body: new Uint8Array(FIXTURE) });
    expect(res.status).toBe(202);
    const os = await nc.jetstream().views.os(BUCKETS.objects);
    const names: string[] = [];
    for (const o of await os.list()) if (!o.deleted) names.push(o.name);
    expect(names).toHaveLength(1);
    const info = (await objectInfo(nc, BUCKETS.objects, names[0]))!;
    expect(isCompressedPart(info)).toBe(true);
    expect(info.headers).toEqual({ 'Content-Encoding': ['zstd'] });
    // The bundled sample shrinks about tenfold.
    expect(info.size).toBeLessThan(BODY.length / 5);
    // nats.js checks the digest of what it reads.
    const got = await os.get(names[0]);
    const frame = Buffer.from(await new Response(got!.data).arrayBuffer());
    expect(await got!.error).toBeFalsy();
    expect(frame.length).toBe(info.size);
    expect(zstdDecompress(frame).equals(BODY)).toBe(true);
  }, 60_000);

  it('ingests a part stored uncompressed (before this encoding) as it is', async () => {
    const object = 'legacy/a1/part-00000';
    await putObject(nc, BUCKETS.objects, object, [BODY]);
    expect(isCompressedPart((await objectInfo(nc, BUCKETS.objects, object))!)).toBe(false);
    await ingest()(partEvent('legacy', object, BODY.length));
    expect(await resultOf('legacy')).toMatchObject({ state: 'done', accepted: 2470, rejected: 0 });
  }, 60_000);

  it('inflates each compressed part into the buffer the last one used: a short part after a long one is only its own rows', async () => {
    const handle = ingest();
    const lines = BODY.toString('utf8').split('\n').filter((l) => l !== '');
    const long = Buffer.concat([BODY, BODY]);
    const short = Buffer.from(`${lines.slice(-100).join('\n')}\n`);
    const jsm = await nc.jetstreamManager();
    const firstSeq = (await jsm.streams.info(STREAMS.telemetry)).state.last_seq + 1;
    for (const [id, body] of [['reuse-long', long], ['reuse-short', short]] as const) {
      await putObject(nc, BUCKETS.objects, `${id}/a1/part-00000`, [zstdCompress(body, 1)], { headers: { 'Content-Encoding': ['zstd'] } });
      await handle(partEvent(id, `${id}/a1/part-00000`, body.length));
    }
    expect(await resultOf('reuse-long')).toMatchObject({ state: 'done', accepted: 4940, rejected: 0 });
    expect(await resultOf('reuse-short')).toMatchObject({ state: 'done', accepted: 100, rejected: 0 });
    const stored = [];
    for (let seq = firstSeq; seq <= (await jsm.streams.info(STREAMS.telemetry)).state.last_seq; seq++) {
      stored.push(...decodeSampleBatch((await jsm.streams.getMessage(STREAMS.telemetry, { seq })).data).filter((r) => r.upload_id === 'reuse-short'));
    }
    expect(stored.map((r) => [r.line, r.uuid, r.metric_name, r.value])).toEqual(
      fixtureRows().slice(-100).map((f, i) => [i + 2, f.uuid, f.metric_name, Number(f.value)]),
    );
  }, 60_000);

  it('inflates a frame into a larger reused buffer, and refuses garbage or a content that does not fit', () => {
    const frame = zstdCompress(BODY, 1);
    const target = Buffer.alloc(BODY.length + 100, 0xee);
    expect(zstdDecompressInto(frame, target)).toBe(BODY.length);
    expect(target.subarray(0, BODY.length).equals(BODY)).toBe(true);
    expect(target[BODY.length]).toBe(0xee);
    const short = BODY.subarray(0, 10);
    expect(zstdDecompressInto(zstdCompress(short, 1), target)).toBe(10);
    expect(target.subarray(0, 10).equals(short)).toBe(true);
    expect(() => zstdDecompressInto(Buffer.from('not a zstd frame'), target)).toThrow('not a valid frame');
    expect(() => zstdDecompressInto(frame, Buffer.alloc(BODY.length - 1))).toThrow('larger than the target');
  });

  it('fails a compressed part whose frame is not the announced part, without retrying it', async () => {
    const object = 'broken/a1/part-00000';
    // A valid digest over bytes that are not a zstd frame.
    await putObject(nc, BUCKETS.objects, object, [Buffer.from('not a zstd frame')], { headers: { 'Content-Encoding': ['zstd'] } });
    await ingest()(partEvent('broken', object, BODY.length));
    const r = await resultOf('broken');
    expect(r.state).toBe('failed');
    expect(r.error).toBe(`stored part ${object} is not a valid zstd frame of at most ${BODY.length + 1} bytes`);
    await expect(decompressPart(Buffer.alloc(0), 1)).rejects.toThrow('is not a valid zstd frame');
    // A valid frame of another size than the upload announced.
    const frame = zstdCompress(BODY, 1);
    await expect(decompressPart(frame, BODY.length + 1)).rejects.toThrow(`holds ${BODY.length} bytes, not the ${BODY.length + 1} announced`);
  }, 60_000);
});
