import { createHash } from 'node:crypto';
import { HttpError, sendJsonText, type Req, type Res } from '../../shared/http.ts';
import { invalidParameters } from './params.ts';

// Request plumbing the query routes share: aborting ClickHouse work when the client leaves,
// window checks and conditional answers (ETag / If-None-Match).

/** Aborts the ClickHouse query when the client goes away before the answer is sent. */
export async function untilClientLeaves<T>(res: Res, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) ac.abort();
  };
  res.once('close', onClose);
  try {
    return await work(ac.signal);
  } catch (e) {
    if (ac.signal.aborted) throw new HttpError(499, 'client_closed_request', 'the client closed the connection');
    throw e;
  } finally {
    res.off('close', onClose);
  }
}

/** The 404 of every per-GPU route: a GPU with no stored sample. */
export const gpuNotFound = (uuid: string) => new HttpError(404, 'gpu_not_found', `no telemetry is stored for GPU ${uuid}`);

export function checkWindow(q: { start_time?: number; end_time?: number }, strict = false): void {
  if (q.start_time !== undefined && q.end_time !== undefined && (strict ? q.start_time >= q.end_time : q.start_time > q.end_time)) {
    throw invalidParameters([{ parameter: 'start_time', in: 'query', message: strict ? 'must be before end_time' : 'is after end_time' }]);
  }
}

/** A strong validator of the answer's bytes. */
export const etagOf = (payload: string) => `"${createHash('sha256').update(payload).digest('base64url').slice(0, 27)}"`;

function matches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  // Weak comparison (RFC 9110 §13.1.2): W/ prefixes are ignored.
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}

/**
 * 200 with an ETag, or 304 without a body when the client already holds this answer. The tag
 * covers the body except the signature time inside `next_cursor` (it changes every second while
 * the page does not): the cursor's key is the page's last row and its filters are the URL's, so
 * whether there is a next page is all it adds. A cached cursor stays usable for CURSOR_MAX_AGE_S.
 */
export function sendConditional(req: Req, res: Res, body: unknown): void {
  // Serialized once: the tagged text is the payload with its cursor swapped for whether there is
  // one (next_cursor is the answers' last key; any other shape is serialized again for the tag).
  const payload = JSON.stringify(body);
  const cursor = (body as { next_cursor?: unknown }).next_cursor;
  let tagged = payload;
  if (cursor !== undefined) {
    const tail = `"next_cursor":${JSON.stringify(cursor)}}`;
    tagged = payload.endsWith(tail)
      ? `${payload.slice(0, -tail.length)}"next_cursor":${cursor !== null}}`
      : JSON.stringify({ ...(body as object), next_cursor: cursor !== null });
  }
  const etag = etagOf(tagged);
  const headers = { etag, 'cache-control': 'private, no-cache' };
  if (matches(req.headers['if-none-match'], etag)) {
    if (res.headersSent) return;
    res.writeHead(304, headers);
    res.end();
    return;
  }
  sendJsonText(res, 200, payload, headers);
}
