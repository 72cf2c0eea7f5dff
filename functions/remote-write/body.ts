import snappy from 'snappyjs';
import { HttpError, type Req } from '../../shared/http.ts';

// The HTTP side of remote write 1.0: the headers a request must carry, and its body read within
// the size limits and decompressed (snappy block format, as the spec requires).

export const REMOTE_WRITE_VERSION = '0.1.0';

const printable = (s: string) => (/^[\x20-\x7e]{0,100}$/.test(s) ? `"${s}"` : '(a value that is not short printable ASCII)');

/**
 * Remote write 1.0 headers. A wrong media type or encoding is 415, the status a remote-write 2.0
 * sender takes as "fall back to 1.0"; a missing version header is 400.
 */
export function checkHeaders(req: Req): void {
  const encoding = String(req.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (encoding !== 'snappy') {
    throw new HttpError(415, 'unsupported_encoding', `Content-Encoding must be snappy (remote write 1.0), got ${encoding ? printable(encoding) : 'none'}`);
  }
  const [type, ...params] = String(req.headers['content-type'] ?? '').toLowerCase().split(';').map((s) => s.trim());
  const proto = params.find((p) => p.startsWith('proto='))?.slice(6);
  if (type !== 'application/x-protobuf' || (proto !== undefined && proto !== 'prometheus.writerequest')) {
    throw new HttpError(415, 'unsupported_media_type', `Content-Type must be application/x-protobuf carrying a prometheus.WriteRequest (remote write 1.0), got ${printable(String(req.headers['content-type'] ?? ''))}`);
  }
  const version = req.headers['x-prometheus-remote-write-version'];
  if (version === undefined) {
    throw new HttpError(400, 'missing_version', `the X-Prometheus-Remote-Write-Version header is required (${REMOTE_WRITE_VERSION})`);
  }
  if (String(version).trim() !== REMOTE_WRITE_VERSION && !String(version).trim().startsWith('0.1.')) {
    throw new HttpError(415, 'unsupported_version', `X-Prometheus-Remote-Write-Version ${printable(String(version))} is not supported; this endpoint speaks ${REMOTE_WRITE_VERSION}`);
  }
}

const tooLarge = (what: string, max: number) => new HttpError(413, 'payload_too_large', `${what} is larger than the limit of ${max} bytes`);

/**
 * The raw request body, at most `max` bytes: a larger declared Content-Length is refused before
 * reading, and a body that turns out larger stops being read. Under the Functions Framework the
 * body arrives pre-read (`rawBody`).
 */
export async function readBody(req: Req, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > max) throw tooLarge(`the request body (${declared} bytes)`, max);
  const pre = (req as unknown as { rawBody?: Buffer }).rawBody;
  if (Buffer.isBuffer(pre)) {
    if (pre.length > max) throw tooLarge('the request body', max);
    return pre;
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > max) throw tooLarge('the request body', max);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

/**
 * Snappy block format → bytes. The format declares the decoded length first; snappyjs checks it
 * against `maxDecoded` before allocating, so a small body cannot claim gigabytes.
 */
export function decompress(body: Buffer, maxDecoded: number): Buffer {
  if (body.length === 0) throw new HttpError(400, 'empty_body', 'the request body is empty; send a snappy-compressed prometheus.WriteRequest');
  try {
    return snappy.uncompress(body, maxDecoded);
  } catch (e) {
    const message = e instanceof Error ? e.message : '';
    if (/uncompressed length of \d+ is too big/.test(message)) {
      throw tooLarge(`the decompressed request (${/\d+/.exec(message)![0]} bytes declared)`, maxDecoded);
    }
    throw new HttpError(400, 'bad_snappy', 'the body is not valid snappy (block format) data');
  }
}
