import * as functions from '@google-cloud/functions-framework';
import { CloudEvent, type CloudEventV1 } from 'cloudevents';
import { parse, type Options } from 'csv-parse';
import { Readable } from 'node:stream';
import type { NatsConnection, PubAck } from 'nats';
import { parseEnv } from '../../shared/config.ts';
import { NATS, toNatsHeaders } from '../../shared/cloudevents-nats.ts';
import { rowsCounter } from '../../shared/metrics.ts';
import { BUCKETS, EVENT_TYPES, SUBJECTS } from '../../shared/names.ts';
import { sharedNats } from '../../shared/nats.ts';
import { getObject, ObjectIncompleteError, objectInfo } from '../../shared/object-store.ts';
import { headerProblem, uploadedPart, type PartResult, type RejectReason, type UploadedPart } from '../../shared/schemas.ts';
import { PermanentError } from '../../shared/worker.ts';
import { ingestEnv, type IngestConfig } from './config.ts';
import { columnIndexes, fieldBreaks, tsvLine, validateRecord } from './rows.ts';

// ingest (CloudEvent `csv.uploaded`): streams one stored part through csv-parse, validates every
// row with zod, and publishes TabSeparated batches to the telemetry stream. Batch ids are
// `<upload>.<part>.<seq>` and double as Nats-Msg-Id, so a retried part publishes the same ids and
// nothing is duplicated. Bad rows are counted with line numbers and reasons; good rows still land.

const SOURCE = '/functions/ingest';

export function createIngestHandler(cfg: IngestConfig, getNats: () => Promise<NatsConnection>) {
  return async function ingest(event: CloudEventV1<unknown>): Promise<void> {
    const parsed = uploadedPart.safeParse(event.data);
    if (!parsed.success) throw new PermanentError(`event data is not a csv.uploaded payload: ${parsed.error.message}`);
    const data = parsed.data;
    const nc = await getNats();
    const js = nc.jetstream();
    const kv = await js.views.kv(BUCKETS.status);
    const resultKey = `${data.uploadId}.part.${data.part}`;
    const save = (r: PartResult) => kv.put(resultKey, JSON.stringify(r));

    const problem = headerProblem(data.header);
    if (problem) {
      await save({ part: data.part, state: 'failed', accepted: 0, rejected: 0, batches: 0, rejects: [], error: problem });
      return;
    }
    const object = await objectInfo(nc, BUCKETS.objects, data.object);
    if (!object) {
      await save({ part: data.part, state: 'failed', accepted: 0, rejected: 0, batches: 0, rejects: [], error: `stored part ${data.object} no longer exists` });
      return;
    }
    // A corrupt object makes getObject throw at its end: the part is retried. Missing chunks
    // (expired/deleted) cannot come back: the part fails like a missing object.
    const publish: Publish = async (seq, body, rows) => {
      const id = `${data.uploadId}.${data.part}.${seq}`;
      const ce = new CloudEvent({
        id,
        source: SOURCE,
        type: EVENT_TYPES.samples,
        subject: data.uploadId,
        datacontenttype: 'text/tab-separated-values',
        uploadid: data.uploadId,
        rows: String(rows),
        data: body,
      });
      const msg = NATS.binary(ce);
      return js.publish(SUBJECTS.samples, msg.body, { headers: toNatsHeaders(msg), msgID: id, timeout: 30_000 });
    };
    let result: PartResult;
    try {
      result = await ingestPart(cfg, data, Readable.from(getObject(nc, BUCKETS.objects, object)), publish);
    } catch (e) {
      if (!(e instanceof ObjectIncompleteError)) throw e;
      await save({ part: data.part, state: 'failed', accepted: 0, rejected: 0, batches: 0, rejects: [], error: `stored part ${e.message}` });
      return;
    }
    await save(result);
    rowsCounter.inc({ stage: 'ingest', outcome: 'accepted' }, result.accepted);
    rowsCounter.inc({ stage: 'ingest', outcome: 'rejected' }, result.rejected);
  };
}

type Publish = (seq: number, body: Buffer, rows: number) => Promise<PubAck>;

/** Parses, validates and publishes one part; returns its counts (pure apart from `publish`). */
export async function ingestPart(cfg: IngestConfig, data: UploadedPart, input: Readable, publish: Publish): Promise<PartResult> {
  const indexes = columnIndexes(data.header);
  const restamp = data.restamp || cfg.INGEST_TIMESTAMP_MODE === 'processing';
  const rejects: RejectReason[] = [];
  let accepted = 0;
  let rejected = 0;
  let seq = 0;
  let lines: string[] = [];
  const inFlight = new Set<Promise<PubAck>>();
  let firstError: unknown;
  const reject = (line: number, reason: string) => {
    rejected++;
    if (rejects.length < cfg.INGEST_MAX_REJECT_REASONS) rejects.push({ line, reason });
  };

  const flush = async () => {
    if (lines.length === 0) return;
    const body = Buffer.from(lines.join(''), 'utf8');
    const rows = lines.length;
    lines = [];
    const p = publish(seq++, body, rows);
    inFlight.add(p);
    p.then(() => inFlight.delete(p), (e) => (firstError ??= e));
    // Bounded window: parsing continues while earlier batches are being stored.
    while (inFlight.size >= cfg.INGEST_PUBLISH_WINDOW && firstError === undefined) await Promise.race(inFlight).catch(() => undefined);
    if (firstError !== undefined) throw firstError;
  };

  const lineBase = data.firstLine - 1;
  // csv-parse's line counter runs ahead of physical (LF) lines by every CR inside fields and
  // points at a record's last line; corrected so lines match the file however it was split.
  let extraCr = 0;
  const parser = input.pipe(
    parse({
      relax_column_count: true,
      skip_empty_lines: true,
      skip_records_with_error: true,
      on_skip: (err: unknown) => {
        const e = err as { message?: string; lines?: number } | undefined;
        reject(lineBase + (e?.lines ?? 0) - extraCr, `malformed CSV: ${e?.message ?? 'unparseable record'}`);
        return undefined;
      },
      on_record: (record: string[], context: { lines: number }) => {
        const { cr, lf } = fieldBreaks(record);
        const line = lineBase + context.lines - extraCr - cr - lf;
        extraCr += cr;
        return { record, line };
      },
    } as unknown as Options),
  );
  // pipe() does not forward a source error (e.g. a corrupt stored part): without this the error
  // would be unhandled (the process dies) and the parser would wait for input forever.
  input.once('error', (e) => parser.destroy(e));
  try {
    let batchId = `${data.uploadId}.${data.part}.${seq}`;
    for await (const { record, line } of parser as AsyncIterable<{ record: string[]; line: number }>) {
      const r = validateRecord(record, indexes);
      if (!r.ok) {
        reject(line, r.reason);
        continue;
      }
      accepted++;
      lines.push(tsvLine(r.sample, restamp ? Date.now() : r.sample.timestamp, data.uploadId, batchId, line));
      if (lines.length >= cfg.INGEST_BATCH_ROWS) {
        await flush();
        batchId = `${data.uploadId}.${data.part}.${seq}`;
      }
    }
    await flush();
    await Promise.all(inFlight);
  } finally {
    // An early exit (a failed publish) leaves the source suspended; destroying it ends the
    // object read and its consumer instead of leaking one per failed attempt.
    input.destroy();
  }
  if (firstError !== undefined) throw firstError;
  return { part: data.part, state: 'done', accepted, rejected, batches: seq, rejects };
}

let handler: ReturnType<typeof createIngestHandler> | undefined;
/** The handler configured from the environment; the Functions Framework and the worker both call it. */
export function ingestHandler(event: CloudEventV1<unknown>): Promise<void> {
  handler ??= createIngestHandler(parseEnv(ingestEnv), () => sharedNats('ingest'));
  return handler(event);
}

functions.cloudEvent('ingest', ingestHandler);
