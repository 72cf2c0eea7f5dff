import { parse as parseContentType } from 'content-type';
import { Readable, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { HttpError, RequestIdleError, type Req, type Res } from '../../shared/http.ts';
import { textProblem } from '../../shared/sample-rules.ts';
import { printableName } from '../../shared/schemas.ts';
import { multipartFile } from './multipart.ts';
import { CsvHeaderError, CsvRecordTooLongError, CsvTooLargeError } from './split.ts';

// The CSV bytes of an upload request: media type, charset and Content-Encoding checked from the
// headers first (415/400/413 before anything is stored), then the body decoded as it streams
// (gzip), the `file` part taken from a multipart form, and the size limit enforced on the bytes
// as they arrive — on the compressed and on the decoded bytes, so a gzip bomb stops at the limit.
// Every failure while reading becomes an HttpError naming the problem, never quoting the input.

const CSV_TYPES = new Set(['', 'text/csv', 'application/csv', 'application/octet-stream', 'text/plain']);
const CHARSETS = new Set(['utf-8', 'utf8', 'us-ascii', 'ascii']);
/** Room for multipart framing around a file of the maximum size. */
const FORM_OVERHEAD = 64 * 1024;

export interface UploadBody {
  /** The CSV bytes, decoded and limited; iteration errors are HttpErrors. */
  chunks: AsyncIterable<Buffer>;
  /** The form's filename or X-Filename, when it is printable text. */
  filename(): string | undefined;
  /** As declared by the request (compared when an Idempotency-Key is retried). */
  declared: { bytes?: number; encoding: string };
  /** The size is declared, final and within the limit: parts may be announced while the body arrives. */
  pipelined: boolean;
}

/** Enforces the size limit while bytes flow (Content-Length may be absent or lie). */
export async function* limited(source: AsyncIterable<Buffer>, max: number, what = 'the upload'): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of source) {
    total += chunk.length;
    if (total > max) throw new CsvTooLargeError(`${what} is larger than the limit of ${max} bytes`);
    yield chunk;
  }
}

function mediaType(req: Req): { type: string; charset?: string } {
  const header = req.headers['content-type'] ?? '';
  const parsed = parseContentType(header);
  return { type: parsed.type, charset: parsed.parameters.charset?.toLowerCase() };
}

function contentEncoding(req: Req): 'identity' | 'gzip' {
  const raw = (req.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (raw === '' || raw === 'identity') return 'identity';
  if (raw === 'gzip' || raw === 'x-gzip') return 'gzip';
  throw new HttpError(415, 'unsupported_encoding', `Content-Encoding ${JSON.stringify(printableName(raw, 'an encoding name'))} is not accepted: send the body uncompressed or with Content-Encoding: gzip`);
}

/** A declared Content-Length (Node has already refused a malformed one). */
function contentLength(req: Req): number | undefined {
  const raw = req.headers['content-length'];
  return raw === undefined ? undefined : Number(raw);
}

/** Errors of reading the body, as the client's problem it is (or rethrown: a bug is a 500). */
export function bodyProblem(e: unknown, opts: { requestTimeoutMs: number; startedAt: number }): unknown {
  if (e instanceof HttpError) return e;
  if (e instanceof CsvTooLargeError) return new HttpError(413, 'payload_too_large', e.message);
  if (e instanceof CsvHeaderError) return new HttpError(400, 'invalid_header', e.message);
  if (e instanceof CsvRecordTooLongError) return new HttpError(400, 'record_too_long', e.message);
  if (e instanceof RequestIdleError) return new HttpError(408, 'request_timeout', e.message);
  const err = e as { code?: string; message?: string };
  if (typeof err?.code === 'string' && err.code.startsWith('Z_')) {
    return new HttpError(
      400,
      'invalid_gzip',
      err.code === 'Z_BUF_ERROR'
        ? 'the gzip data ends before its end (truncated body?)'
        : 'the body is not valid gzip data (Content-Encoding: gzip)',
    );
  }
  if (err?.code === 'ECONNRESET' || err?.message === 'aborted') {
    return Date.now() - opts.startedAt >= opts.requestTimeoutMs
      ? new HttpError(408, 'request_timeout', `the upload did not arrive within ${opts.requestTimeoutMs} ms (HTTP_REQUEST_TIMEOUT_MS)`)
      : new HttpError(400, 'incomplete_body', 'the request body ended before it was complete (the client disconnected)');
  }
  return e;
}

async function* mapped(source: AsyncIterable<Buffer>, opts: Parameters<typeof bodyProblem>[1]): AsyncGenerator<Buffer> {
  try {
    yield* source;
  } catch (e) {
    throw bodyProblem(e, opts);
  }
}

/** Checks the request's headers and returns its CSV bytes as a stream; throws 415/400/413 at once. */
export function openBody(req: Req, opts: { maxBytes: number; requestTimeoutMs: number; startedAt: number }): UploadBody {
  const { type, charset } = mediaType(req);
  const multipart = type === 'multipart/form-data';
  if (!multipart && !CSV_TYPES.has(type)) {
    throw new HttpError(415, 'unsupported_media_type', `Content-Type ${JSON.stringify(printableName(type, 'a media type'))} is not accepted: send text/csv or multipart/form-data with a "file" field`);
  }
  if (charset !== undefined && !CHARSETS.has(charset)) {
    throw new HttpError(415, 'unsupported_charset', `charset ${JSON.stringify(printableName(charset, 'a charset name'))} is not accepted: the CSV must be UTF-8 (charset=utf-8, or us-ascii)`);
  }
  const encoding = contentEncoding(req);
  const declared = contentLength(req);
  if (declared !== undefined && declared > opts.maxBytes + FORM_OVERHEAD) {
    throw new HttpError(413, 'payload_too_large', `the upload (${declared} bytes) is larger than the limit of ${opts.maxBytes} bytes`);
  }
  const form = multipart ? multipartFile(req.headers) : undefined;
  const decoded = (): Readable => {
    if (encoding === 'identity') return req;
    const gunzip = createGunzip();
    // Errors of either side end up on gunzip, where the reader sees them.
    pipeline(Readable.from(limited(req, opts.maxBytes + FORM_OVERHEAD, 'the compressed upload')), gunzip, () => undefined);
    return gunzip;
  };
  const file = form ? { [Symbol.asyncIterator]: () => form.chunks(decoded()) } : { [Symbol.asyncIterator]: () => decoded()[Symbol.asyncIterator]() };
  const named = req.headers['x-filename'];
  return {
    chunks: mapped(limited(file as AsyncIterable<Buffer>, opts.maxBytes), opts),
    filename: () => {
      const name = form?.filename() ?? (typeof named === 'string' ? named : undefined);
      return name !== undefined && !textProblem(name, { max: 255, name: true }) ? name : undefined;
    },
    declared: { bytes: declared, encoding },
    pipelined: !form && encoding === 'identity' && declared !== undefined && declared <= opts.maxBytes,
  };
}

/**
 * An unread body refused up front of at most this many declared bytes is read to its end (and
 * discarded) after the early answer: a client that sends the whole body before reading the
 * answer (fetch does) then gets the answer instead of a connection reset.
 */
const DRAIN_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Stops using a body the handler will not store: what arrives is discarded. A body already being
 * read (`unread: false`), larger than DRAIN_MAX_BYTES or of unknown length is cut off: the
 * connection closes after the response, so the client stops sending.
 */
export function discardBody(req: Req, res: Res, opts: { unread?: boolean } = {}): void {
  const declared = contentLength(req);
  const drain = opts.unread === true && declared !== undefined && declared <= DRAIN_MAX_BYTES;
  if (!res.headersSent && !drain) res.setHeader('connection', 'close');
  req.unpipe();
  req.resume();
}
