import * as functions from '@google-cloud/functions-framework';
import type { CloudEventV1 } from 'cloudevents';
import { Counter } from 'prom-client';
import { Readable } from 'node:stream';
import type { NatsConnection } from 'nats';
import { parseEnv } from '../../shared/config.ts';
import { EventLoopPacer } from '../../shared/heartbeat.ts';
import { loggerFor } from '../../shared/log.ts';
import { registry, rowsCounter } from '../../shared/metrics.ts';
import { BUCKETS, EVENT_SOURCES } from '../../shared/names.ts';
import { publishSampleBatch, type SampleBatchEncoder } from '../../shared/sample-batch.ts';
import { sharedNats } from '../../shared/nats.ts';
import { deleteObject, getObject, ObjectIncompleteError, objectInfo, type ObjectInfo } from '../../shared/object-store.ts';
import { decompressPart, isCompressedPart } from '../../shared/part-object.ts';
import { headerProblem, partResult, uploadedPart, type PartResult, type UploadedPart } from '../../shared/schemas.ts';
import { PermanentError } from '../../shared/worker.ts';
import { ingestEnv, type IngestConfig } from './config.ts';
import { FastRows } from './fast-rows.ts';
import { PartOutput, type Publish } from './output.ts';
import { referenceRows } from './reference.ts';
import { columnIndexes } from './rows.ts';
import { ScanScratch, scanCsv, type ScannedPart } from './scan.ts';

// ingest (CloudEvent `csv.uploaded`): reads one stored part (inflated when compressed, shared/
// part-object.ts), scans its bytes (functions/ingest/scan.ts), checks every row with the shared
// rules on the scanned fields (fast-rows.ts) and writes accepted rows straight into Native batches
// (shared/sample-batch.ts) for the telemetry stream. A part the scanner does not take (broken
// quoting and the like) goes through csv-parse and the zod row schema instead (reference.ts), which
// give the same answers on every part the scanner takes (test/ingest-differential.test.ts). Batch
// ids are `<upload>.<part>.<seq>` and double as Nats-Msg-Id, so a retried part publishes the same
// ids and nothing is duplicated. Bad rows are counted with line numbers and reasons; good rows
// still land.

const SOURCE = EVENT_SOURCES.ingest;
const log = loggerFor('ingest');
const partsCounter = new Counter({
  name: 'gputel_ingest_parts_total',
  help: 'CSV parts ingested, by path: the byte-level scanner or csv-parse (parts the scanner does not take)',
  labelNames: ['path'],
  registers: [registry],
});

export function createIngestHandler(cfg: IngestConfig, getNats: () => Promise<NatsConnection>) {
  // One scratch kept between parts; a concurrent call (the Functions Framework may make one) gets its own.
  let idle: PartScratch | undefined = new PartScratch();
  return async function ingest(event: CloudEventV1<unknown>): Promise<void> {
    const parsed = uploadedPart.safeParse(event.data);
    if (!parsed.success) throw new PermanentError(`event data is not a csv.uploaded payload: ${parsed.error.message}`);
    const data = parsed.data;
    const nc = await getNats();
    const js = nc.jetstream();
    const kv = await js.views.kv(BUCKETS.status);
    const resultKey = `${data.uploadId}.part.${data.part}`;
    const save = (r: PartResult) => kv.put(resultKey, JSON.stringify(r));
    // A redelivered (or repeated) part whose object is gone because it was ingested: nothing to do.
    const alreadyDone = async () => partResult.safeParse((await kv.get(resultKey))?.json()).data?.state === 'done';

    const problem = headerProblem(data.header);
    if (problem) {
      await save({ part: data.part, state: 'failed', accepted: 0, rejected: 0, batches: 0, rejects: [], error: problem });
      return;
    }
    const object = await objectInfo(nc, BUCKETS.objects, data.object);
    if (!object) {
      if (await alreadyDone()) return;
      await save({ part: data.part, state: 'failed', accepted: 0, rejected: 0, batches: 0, rejects: [], error: `stored part ${data.object} no longer exists` });
      return;
    }
    // A corrupt object makes getObject throw at its end: the part is retried. Missing chunks
    // (expired/deleted) or a frame that does not inflate to the announced part cannot come
    // back: the part fails like a missing object.
    const publish: Publish = (batch) => publishSampleBatch(js, batch, SOURCE);
    let result: PartResult;
    try {
      const scratch = idle ?? new PartScratch();
      idle = undefined;
      try {
        const stored = Readable.from(getObject(nc, BUCKETS.objects, object));
        const input = isCompressedPart(object) ? await inflatedPart(stored, scratch, object, data.bytes) : stored;
        result = await ingestPart(cfg, data, input, publish, scratch, object.size);
      } finally {
        idle = scratch;
      }
    } catch (e) {
      if (!(e instanceof ObjectIncompleteError || e instanceof PartContentError)) throw e;
      if (await alreadyDone()) return;
      await save({ part: data.part, state: 'failed', accepted: 0, rejected: 0, batches: 0, rejects: [], error: `stored part ${e.message}` });
      return;
    }
    await save(result);
    // Its rows are in the telemetry stream now: the stored part is not needed any more (failed
    // parts keep theirs, for inspection, until the bucket's RETENTION_HOURS).
    await deleteObject(nc, BUCKETS.objects, data.object).catch((e: unknown) => log.warn({ err: e, object: data.object }, 'could not delete an ingested part; it expires with the bucket'));
    rowsCounter.inc({ stage: 'ingest', outcome: 'accepted' }, result.accepted);
    rowsCounter.inc({ stage: 'ingest', outcome: 'rejected' }, result.rejected);
  };
}

/** A stored part whose digest is right but whose content is not what the upload announced. */
class PartContentError extends Error {}

/**
 * The CSV of a compressed part (shared/part-object.ts): its frame read whole into the scratch part
 * buffer (as an uncompressed part is), then inflated into the scratch's second buffer.
 */
async function inflatedPart(stored: Readable, scratch: PartScratch, object: ObjectInfo, bytes: number): Promise<Buffer> {
  let frame: Buffer;
  try {
    frame = await readPart(stored, scratch, object.size);
  } finally {
    stored.destroy();
  }
  // Inflated straight into the scratch's second buffer, reused from part to part: a new buffer
  // per part, kept while the part is scanned, was promoted and freed only by a full GC (ingest's
  // RSS grew with the upload), and filling fresh memory costs a page fault per 4 KiB here
  // (shared/zstd.ts).
  scratch.inflated = atLeast(scratch.inflated, bytes + 1);
  try {
    return await decompressPart(frame, bytes, scratch.inflated);
  } catch (e) {
    throw new PartContentError(`${object.name} ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * Buffers an ingest process reuses from part to part (it handles one part at a time). Allocated
 * per part (an 8 MiB part buffer, the scanner's arrays, the batch columns), their external memory
 * made V8 run a full mark-compact every few parts: ≈ 1 s of GC per 250,000 rows.
 */
export class PartScratch {
  bytes = Buffer.allocUnsafe(0);
  /** A compressed part's content (`bytes` holds its frame). */
  inflated = Buffer.allocUnsafe(0);
  readonly scan = new ScanScratch();
  encoder?: SampleBatchEncoder;
}

/** `buffer` if it holds `bytes`, else a new one rounded up to whole MiB (the next part of about that size fits). */
const atLeast = (buffer: Buffer<ArrayBuffer>, bytes: number): Buffer<ArrayBuffer> => (bytes > buffer.length ? Buffer.allocUnsafe(Math.ceil(bytes / 1024 ** 2) * 1024 ** 2) : buffer);

/**
 * The whole part in one buffer (a part is UPLOAD_PART_BYTES, 8 MiB by default, plus the rest of
 * its last record). With the stored object's size known the buffer is allocated once, before the
 * read, rounded up to whole MiB so the next part of about that size reuses it: doubling from the
 * first chunk instead made an 8 MiB part take a 16 MiB buffer (and 15 MiB of copies on the way).
 */
async function readPart(input: Readable | Buffer, scratch: PartScratch, sizeHint = 0): Promise<Buffer> {
  // An inflated part is already whole: used as it is, not copied.
  if (Buffer.isBuffer(input)) return input;
  scratch.bytes = atLeast(scratch.bytes, sizeHint);
  let size = 0;
  // pipe()-free read: an error of the source (e.g. a corrupt stored part) rejects here.
  for await (const data of input) {
    const chunk: Buffer = Buffer.isBuffer(data) ? data : Buffer.from(data);
    if (size + chunk.length > scratch.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(size + chunk.length, scratch.bytes.length * 2));
      scratch.bytes.copy(grown, 0, 0, size);
      scratch.bytes = grown;
    }
    size += chunk.copy(scratch.bytes, size);
  }
  return scratch.bytes.subarray(0, size);
}

/**
 * Checks records from `from` on and writes the valid ones into the batch, until the batch is full
 * (returns the next record) or the part ends. Synchronous, so V8 optimizes the loop (it would not
 * in the async function that awaits the publishes).
 */
function fillBatch(bytes: Buffer, p: ScannedPart, from: number, rows: FastRows, out: PartOutput, firstLine: number): number {
  for (let r = from; r < p.records; r++) {
    const line = firstLine + p.lineOffset[r];
    const reason = rows.check(bytes, p, r);
    if (reason !== undefined) out.reject(line, reason);
    else {
      rows.write(bytes, p, r, out.encoder, out.restamp ? Date.now() : rows.timestamp, line);
      if (out.added()) return r + 1;
    }
  }
  return p.records;
}

/**
 * Parses, validates and publishes one part; returns its counts (pure apart from `publish`).
 * `sizeHint`: the part's size in bytes if known (the stored object's), to size its buffer once.
 */
export async function ingestPart(cfg: IngestConfig, data: UploadedPart, input: Readable | Buffer, publish: Publish, scratch = new PartScratch(), sizeHint = 0): Promise<PartResult> {
  let bytes: Buffer;
  try {
    bytes = await readPart(input, scratch, sizeHint);
  } finally {
    // An early exit leaves the source suspended; destroying it ends the object read and its
    // consumer instead of leaking one per failed attempt.
    if (!Buffer.isBuffer(input)) input.destroy();
  }
  const indexes = columnIndexes(data.header);
  const out = new PartOutput(cfg, data, publish, scratch.encoder);
  scratch.encoder = out.encoder;
  const scanned = scanCsv(bytes, scratch.scan);
  if (scanned.ok) {
    partsCounter.inc({ path: 'scanner' });
    const rows = new FastRows(indexes);
    // Checking data already in memory never returns to the event loop on its own: without pauses
    // the worker's heartbeats would stop and a long part would be redelivered while still checked.
    const pacer = new EventLoopPacer(50, 1); // checked once per batch, not per row
    for (let r = 0; r < scanned.part.records; ) {
      r = fillBatch(bytes, scanned.part, r, rows, out, data.firstLine);
      if (r < scanned.part.records) await out.flush();
      if (pacer.due()) await pacer.pause();
    }
  } else {
    partsCounter.inc({ path: 'csv-parse' });
    log.info({ upload_id: data.uploadId, part: data.part, reason: scanned.reason }, 'part read by csv-parse (the scanner does not take it)');
    await referenceRows(bytes, indexes, data.firstLine, out);
  }
  return out.end();
}

let handler: ReturnType<typeof createIngestHandler> | undefined;
/** The handler configured from the environment; the Functions Framework and the worker both call it. */
export function ingestHandler(event: CloudEventV1<unknown>): Promise<void> {
  handler ??= createIngestHandler(parseEnv(ingestEnv), () => sharedNats('ingest'));
  return handler(event);
}

functions.cloudEvent('ingest', ingestHandler);
