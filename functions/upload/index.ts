import * as functions from '@google-cloud/functions-framework';
import busboy from 'busboy';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { CloudEvent } from 'cloudevents';
import { parse as parseCsvSync } from 'csv-parse/sync';
import type { NatsConnection } from 'nats';
import { parseEnv } from '../../shared/config.ts';
import { NATS, toNatsHeaders } from '../../shared/cloudevents-nats.ts';
import { HttpError, authorize, operationalRoutes, router, sendJson, type Req, type Res } from '../../shared/http.ts';
import { rowsCounter } from '../../shared/metrics.ts';
import { BUCKETS, EVENT_TYPES, SUBJECTS } from '../../shared/names.ts';
import { sharedNats } from '../../shared/nats.ts';
import { deleteObject, putObject } from '../../shared/object-store.ts';
import { headerProblem, type UploadRecord, type UploadedPart } from '../../shared/schemas.ts';
import { uploadEnv, type UploadConfig } from './config.ts';
import { CsvHeaderError, CsvTooLargeError, splitCsv } from './split.ts';
import { readStatus } from './status.ts';

// upload (HTTP): streams a CSV body (raw or multipart field `file`) into the JetStream object
// store as line-aligned parts, records the upload in KV, then publishes one `csv.uploaded`
// CloudEvent per part.

const SOURCE = '/functions/upload';

/** Enforces the size limit while bytes flow (Content-Length may be absent or lie). */
async function* limited(source: AsyncIterable<Buffer>, max: number): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of source) {
    total += chunk.length;
    if (total > max) throw new CsvTooLargeError(`the upload is larger than the limit of ${max} bytes`);
    yield chunk;
  }
}

/** The CSV bytes of the request: the raw body, or the `file` field of a multipart form. */
function csvSource(req: Req): { stream: AsyncIterable<Buffer>; filename?: Promise<string | undefined> } {
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  if (type.startsWith('multipart/form-data')) {
    let resolveName: (n: string | undefined) => void = () => {};
    const filename = new Promise<string | undefined>((r) => (resolveName = r));
    const file = new Promise<Readable>((resolve, reject) => {
      const bb = busboy({ headers: req.headers, limits: { files: 1, fields: 20 } });
      bb.on('file', (field, stream, info) => {
        if (field !== 'file') return stream.resume();
        resolveName(info.filename);
        resolve(stream);
      });
      bb.on('error', (e) => reject(new HttpError(400, 'bad_multipart', `malformed multipart body: ${(e as Error).message}`)));
      bb.on('close', () => {
        resolveName(undefined);
        reject(new HttpError(400, 'missing_file', 'multipart upload has no "file" field'));
      });
      req.pipe(bb);
    });
    async function* fileBytes(): AsyncGenerator<Buffer> {
      yield* (await file) as AsyncIterable<Buffer>;
    }
    return { stream: fileBytes(), filename };
  }
  if (type === '' || type.startsWith('text/csv') || type.startsWith('application/csv') || type.startsWith('application/octet-stream') || type.startsWith('text/plain')) {
    return { stream: req as AsyncIterable<Buffer> };
  }
  throw new HttpError(415, 'unsupported_media_type', `content-type "${type}" is not accepted; send text/csv or multipart/form-data with a "file" field`);
}

interface StoredPart {
  part: number;
  object: string;
  firstLine: number;
  bytes: number;
}


export function createUploadHandler(cfg: UploadConfig, getNats: () => Promise<NatsConnection>) {
  const needUpload = (req: Req) => {
    const denied = authorize(req, cfg.API_TOKENS, 'upload');
    if (denied) throw denied;
  };

  async function receive(req: Req, res: Res, url: URL) {
    needUpload(req);
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > cfg.UPLOAD_MAX_BYTES + 64 * 1024) {
      req.resume();
      throw new HttpError(413, 'payload_too_large', `the upload (${declared} bytes) is larger than the limit of ${cfg.UPLOAD_MAX_BYTES} bytes`);
    }
    const restampParam = url.searchParams.get('timestamps');
    if (restampParam !== null && !['csv', 'processing'].includes(restampParam)) {
      throw new HttpError(400, 'invalid_parameter', 'timestamps must be "csv" (keep the CSV timestamps) or "processing" (re-stamp rows)');
    }
    const restamp = restampParam === 'processing';
    const source = csvSource(req);
    const nc = await getNats();
    const js = nc.jetstream();
    const kv = await js.views.kv(BUCKETS.status);
    const id = randomUUID();
    const record: UploadRecord = { id, state: 'receiving', bytes: 0, createdAt: new Date().toISOString(), restamp };
    await kv.put(id, JSON.stringify(record));
    const stored: StoredPart[] = [];
    let announced = 0;
    // With a declared, acceptable Content-Length each part is announced as soon as it is stored,
    // so ingest runs while the rest of the body arrives. Without one (chunked bodies), parts are
    // announced only after the whole body fits the limit.
    const pipelined = Number.isFinite(declared) && declared <= cfg.UPLOAD_MAX_BYTES;
    try {
      const { header, parts } = await splitCsv(limited(source.stream, cfg.UPLOAD_MAX_BYTES), cfg.UPLOAD_PART_BYTES);
      if (header.trim() === '') throw new HttpError(400, 'empty_body', 'the upload is empty; send a DCGM CSV file');
      const columns: string[] = parseCsvSync(header, { relax_quotes: true })[0] ?? [];
      const problem = headerProblem(columns);
      if (problem) throw new HttpError(400, 'invalid_header', problem);
      const announce = async (p: StoredPart) => {
        const data: UploadedPart = { uploadId: id, part: p.part, object: p.object, header: columns, firstLine: p.firstLine, bytes: p.bytes, restamp };
        const event = new CloudEvent({ id: `${id}.part.${p.part}`, source: SOURCE, type: EVENT_TYPES.uploaded, subject: id, datacontenttype: 'application/json', data });
        const msg = NATS.binary(event);
        await js.publish(SUBJECTS.uploaded, msg.body, { headers: toNatsHeaders(msg), msgID: event.id });
        announced++;
      };
      for await (const part of parts) {
        const object = `${id}/part-${String(part.index).padStart(5, '0')}`;
        await putObject(nc, BUCKETS.objects, object, part.chunks);
        const p = { part: part.index, object, firstLine: part.firstLine, bytes: part.bytes };
        stored.push(p);
        record.bytes += part.bytes;
        if (pipelined) await announce(p);
      }
      const named = req.headers['x-filename'];
      record.filename = (await source.filename) ?? (typeof named === 'string' ? named.slice(0, 255) : undefined);
      record.bytes += Buffer.byteLength(header) + 1;
      record.parts = stored.length;
      record.state = 'received';
      record.receivedAt = new Date().toISOString();
      await kv.put(id, JSON.stringify(record));
      if (!pipelined) for (const p of stored) await announce(p);
      rowsCounter.inc({ stage: 'upload', outcome: 'bytes' }, record.bytes);
      sendJson(res, 202, {
        id,
        state: record.state,
        status_url: `/api/v1/uploads/${id}`,
        bytes: record.bytes,
        parts: record.parts,
      }, { location: `/api/v1/uploads/${id}` });
    } catch (e) {
      // Parts not yet announced are dropped; announced ones are complete records and are kept
      // (good data is not thrown away), which the recorded error says.
      await Promise.all(stored.slice(announced).map((p) => deleteObject(nc, BUCKETS.objects, p.object).catch(() => undefined)));
      if (announced > 0) record.parts = announced;
      const error = e instanceof CsvTooLargeError
        ? new HttpError(413, 'payload_too_large', e.message)
        : e instanceof CsvHeaderError
          ? new HttpError(400, 'invalid_header', e.message)
          : e;
      const reason = error instanceof Error ? error.message : String(error);
      const kept = announced > 0 ? ` (${announced} complete part(s) received before that are ingested)` : '';
      await kv.put(id, JSON.stringify({ ...record, state: 'failed', error: reason + kept }));
      req.resume();
      throw error;
    }
  }

  async function status(req: Req, res: Res, id: string, url: URL) {
    const denied = authorize(req, cfg.API_TOKENS, 'upload') && authorize(req, cfg.API_TOKENS, 'read');
    if (denied) throw denied;
    if (!/^[0-9a-f-]{36}$/.test(id)) throw new HttpError(400, 'invalid_parameter', 'id must be an upload id (a UUID)');
    const reasonsParam = url.searchParams.get('reasons');
    const reasons = reasonsParam === null ? cfg.UPLOAD_STATUS_REASONS : Number(reasonsParam);
    if (!Number.isInteger(reasons) || reasons < 0 || reasons > 1000) throw new HttpError(400, 'invalid_parameter', 'reasons must be an integer from 0 to 1000');
    const js = (await getNats()).jetstream();
    const result = await readStatus(await js.views.kv(BUCKETS.status), await js.views.kv(BUCKETS.progress), id, reasons);
    if (!result) throw new HttpError(404, 'not_found', `no upload with id ${id}`);
    sendJson(res, 200, result);
  }

  const ready = async () => {
    try {
      const nc = await getNats();
      return nc.isClosed() ? ['NATS connection closed'] : [];
    } catch (e) {
      return [`NATS unreachable: ${e instanceof Error ? e.message : e}`];
    }
  };

  return router(
    [
      { method: 'POST', path: '/api/v1/uploads', handle: (req, res, _p, url) => receive(req, res, url) },
      { method: 'GET', path: '/api/v1/uploads/{id}', handle: (req, res, p, url) => status(req, res, p.id, url) },
      ...operationalRoutes(ready),
    ],
    { name: 'upload' },
  );
}

let handler: ReturnType<typeof createUploadHandler> | undefined;
/** The handler configured from the environment (created on first use). */
export function uploadHandler(req: Req, res: Res) {
  handler ??= createUploadHandler(parseEnv(uploadEnv), () => sharedNats('upload'));
  return handler(req, res);
}

// Under the Functions Framework the body arrives pre-buffered (its body-parser reads it all);
// the handler then streams from that buffer. Production uses main.ts, which streams.
functions.http('upload', (req, res) => {
  const body = (req as unknown as { rawBody?: Buffer }).rawBody;
  if (body && req.method === 'POST') {
    const replay = Readable.from([body]) as unknown as Req;
    Object.assign(replay, { headers: req.headers, method: req.method, url: req.url });
    return uploadHandler(replay, res);
  }
  return uploadHandler(req, res);
});
