import { parse as parseCsvSync } from 'csv-parse/sync';
import type { NatsConnection } from 'nats';
import { HttpError, annotate, bearerToken, sendJson, type Req, type Res } from '../../shared/http.ts';
import { loggerFor } from '../../shared/log.ts';
import { rowsCounter } from '../../shared/metrics.ts';
import { BUCKETS } from '../../shared/names.ts';
import { newObjectNuid, putObject } from '../../shared/object-store.ts';
import { compressPart, PART_HEADERS } from '../../shared/part-object.ts';
import { validateRequest } from '../../shared/params.ts';
import { headerProblem, type UploadRecord } from '../../shared/schemas.ts';
import { isTransient } from '../../shared/transient.ts';
import { bodyProblem, discardBody, openBody, type UploadBody } from './body.ts';
import { claimUpload } from './claim.ts';
import type { UploadConfig } from './config.ts';
import { LeaseLostError, type LeasedRecord } from './lease.ts';
import { activeKey, announcePart, forget, partObject, type PartInfo } from './parts.ts';
import { failedRecord, releaseAttempt } from './reaper.ts';
import { idempotencyKey, noPathParams, receiveQuery, type UploadAccepted, type UploadStatus } from './schemas.ts';
import { splitCsv } from './split.ts';

// POST /api/v1/uploads: the body is cut into line-aligned parts as it arrives, each stored in the
// object store (zstd-compressed), then announced (one csv.uploaded event per part). The status
// record says what has been written and announced before it happens, under a lease the receiver
// renews, so an upload whose receiver dies is ended cleanly by another replica (reaper.ts).

const log = loggerFor('upload');

export interface UploadContext {
  cfg: UploadConfig;
  getNats: () => Promise<NatsConnection>;
  /** This replica, as recorded in the leases it holds. */
  owner: string;
  status: (id: string) => Promise<UploadStatus | undefined>;
}

const accepted = (r: UploadRecord, state: UploadAccepted['state'], replayed?: boolean): UploadAccepted => ({
  id: r.id,
  state,
  status_url: `/api/v1/uploads/${r.id}`,
  bytes: r.bytes,
  parts: r.parts ?? 0,
  ...(replayed ? { replayed } : {}),
});

function keyOf(req: Req): string | undefined {
  const raw = req.headers['idempotency-key'];
  if (raw === undefined) return undefined;
  const parsed = idempotencyKey.safeParse(raw);
  if (!parsed.success) throw new HttpError(400, 'invalid_idempotency_key', `Idempotency-Key ${parsed.error.issues[0].message}`);
  return parsed.data;
}

/** What the status tells a client about a failure: our own words for anything not the client's. */
function publicReason(e: unknown): string {
  if (e instanceof HttpError) return e.message;
  if (isTransient(e)) return 'a backing service was unavailable while the upload was stored; retry (with the same Idempotency-Key)';
  return 'internal error while the upload was stored';
}

/** Stores the parts and announces them; returns when the record says `received`. */
async function storeParts(nc: NatsConnection, lease: LeasedRecord, body: UploadBody): Promise<void> {
  const r = lease.record;
  const js = nc.jetstream();
  const { header, parts } = await splitCsv(body.chunks, r.partBytes!);
  if (header.trim() === '') throw new HttpError(400, 'empty_body', 'the upload is empty; send a DCGM CSV file');
  let columns: string[];
  try {
    columns = parseCsvSync(header, { relax_quotes: true })[0] ?? [];
  } catch {
    throw new HttpError(400, 'invalid_header', 'the CSV header line cannot be parsed as CSV');
  }
  const problem = headerProblem(columns);
  if (problem) throw new HttpError(400, 'invalid_header', problem);
  await lease.save((rec) => (rec.columns = columns));

  const announce = async (p: PartInfo) => {
    await lease.save((rec) => (rec.announcing = p));
    await announcePart(js, r, p);
    r.announced = p.part + 1;
    r.announcing = undefined;
  };
  const waiting: PartInfo[] = [];
  for await (const part of parts) {
    const nuid = newObjectNuid();
    await lease.save((rec) => (rec.writing = { part: part.index, nuid }));
    // Compressed (shared/part-object.ts) before the splitter reuses the part's buffer.
    const stored = await compressPart(part.body);
    await putObject(nc, BUCKETS.objects, partObject(r.id, r.attempt, part.index), [stored], { nuid, headers: PART_HEADERS });
    r.stored = part.index + 1;
    r.writing = undefined;
    r.bytes += part.bytes;
    const info = { part: part.index, firstLine: part.firstLine, bytes: part.bytes };
    // With a declared, acceptable Content-Length each part is announced as soon as it is stored,
    // so ingest runs while the rest arrives; otherwise (chunked, gzip, multipart) only once the
    // whole body has arrived within the limit and well-formed.
    if (body.pipelined) await announce(info);
    else waiting.push(info);
  }
  for (const p of waiting) await announce(p);
  r.bytes += Buffer.byteLength(header) + 1;
  await lease.save((rec) => {
    rec.state = 'received';
    rec.parts = rec.stored;
    rec.receivedAt = new Date().toISOString();
    rec.filename = body.filename();
  });
}

export function createReceive(ctx: UploadContext) {
  const { cfg } = ctx;
  return async function receive(req: Req, res: Res, url: URL): Promise<void> {
    const startedAt = Date.now();
    let body: UploadBody;
    let lease: LeasedRecord;
    let nc: NatsConnection;
    try {
      const { query } = validateRequest({ schema: noPathParams, values: {} }, { schema: receiveQuery, url });
      const key = keyOf(req);
      body = openBody(req, { maxBytes: cfg.UPLOAD_MAX_BYTES, requestTimeoutMs: cfg.HTTP_REQUEST_TIMEOUT_MS, startedAt });
      nc = await ctx.getNats();
      const kv = await nc.jetstream().views.kv(BUCKETS.status);
      const claim = await claimUpload(
        { nc, kv, owner: ctx.owner, leaseMs: cfg.UPLOAD_LEASE_MS, status: ctx.status },
        { key, token: bearerToken(req) ?? '', declared: body.declared, restamp: query.timestamps === 'processing', partBytes: cfg.UPLOAD_PART_BYTES },
      );
      if (claim.kind === 'replay') {
        // Already received: the body is not read again; the answer is the upload as it is now.
        annotate(res, { upload_id: claim.record.id, replayed: true });
        discardBody(req, res, { unread: true });
        const state = (await ctx.status(claim.record.id))?.state ?? 'received';
        sendJson(res, 202, accepted(claim.record, state, true), { location: `/api/v1/uploads/${claim.record.id}`, 'idempotent-replayed': 'true' });
        return;
      }
      lease = claim.lease;
    } catch (e) {
      // Refused before any byte of the body was read (headers, parameters, key, claim).
      discardBody(req, res, { unread: true });
      throw e;
    }
    const r = lease.record;
    annotate(res, { upload_id: r.id, attempt: r.attempt });
    lease.startRenewing();
    try {
      await storeParts(nc, lease, body);
    } catch (thrown) {
      const e =
        thrown instanceof LeaseLostError
          ? new HttpError(503, 'upload_interrupted', `${thrown.message}; retry with the same Idempotency-Key`)
          : bodyProblem(thrown, { requestTimeoutMs: cfg.HTTP_REQUEST_TIMEOUT_MS, startedAt });
      lease.stopRenewing();
      discardBody(req, res);
      await fail(nc, lease, e);
      throw e;
    } finally {
      lease.stopRenewing();
    }
    await forget(await nc.jetstream().views.kv(BUCKETS.status), activeKey(r.id));
    rowsCounter.inc({ stage: 'upload', outcome: 'bytes' }, r.bytes);
    sendJson(res, 202, accepted(r, 'received'), { location: `/api/v1/uploads/${r.id}` });
  };
}

/** Records the failure (unless another replica took the upload over) and frees what it held. */
async function fail(nc: NatsConnection, lease: LeasedRecord, e: unknown): Promise<void> {
  const r = lease.record;
  // Each step on its own: whatever does not happen here, the lease running out makes a sweep do.
  const attempt = (step: string, work: () => Promise<unknown>) =>
    work().catch((err: unknown) => log.warn({ err, upload_id: r.id, step }, 'could not end the failed upload; a sweep will'));
  if (!lease.lost) await attempt('record', () => lease.save((rec) => Object.assign(rec, failedRecord(rec, publicReason(e)))));
  await attempt('release', () => releaseAttempt(nc, r));
  if (!lease.lost) await attempt('index', async () => forget(await nc.jetstream().views.kv(BUCKETS.status), activeKey(r.id)));
  if (!(e instanceof HttpError)) log.error({ err: e, upload_id: r.id }, 'upload failed');
}
