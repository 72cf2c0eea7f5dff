import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

// Signed page cursors. A cursor is `<payload>.<mac>`: base64url JSON [version, issued-at, ...]
// and an HMAC-SHA256 (node:crypto) over the route kind and the payload, keyed with CURSOR_SECRET.
// A cursor the API did not issue, or one altered in any byte, is refused before its content is
// even parsed; a genuine one older than CURSOR_MAX_AGE_S is refused too, which bounds how long a
// rotated-out key (CURSOR_SECRET_PREVIOUS) must still be accepted. Any cursor-paged route uses
// cursorSigner with its own kind; the telemetry cursor below is one.

const VERSION = 2;
export const MAX_CURSOR_LENGTH = 1024;
const MAC_BYTES = 16;
const MAC_CHARS = Math.ceil((MAC_BYTES * 4) / 3);
const SHAPE = new RegExp(`^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{${MAC_CHARS}}$`);

export const NOT_ISSUED = 'was not issued by this API or was altered (use next_cursor from the previous page unchanged)';

export interface CursorKeys {
  /** Signs new cursors and verifies. */
  current: string;
  /** Rotated-out secrets: still verify, never sign. */
  previous?: readonly string[];
}

export interface CursorSigner {
  /** A cursor for `kind` (one per route) carrying `payload` (JSON values). */
  seal(kind: string, payload: readonly unknown[]): string;
  /** The payload of a cursor this API issued for `kind`, or why it is refused. */
  open(kind: string, cursor: string): unknown[] | string;
}

export function cursorSigner(keys: CursorKeys, opts: { maxAgeMs: number; now?: () => number }): CursorSigner {
  const now = opts.now ?? Date.now;
  const secrets = [keys.current, ...(keys.previous ?? [])];
  // Compared as text: base64 decoding ignores the spare bits of the last character, text does not.
  const mac = (secret: string, kind: string, body: string) =>
    Buffer.from(createHmac('sha256', secret).update(`${kind}.${body}`).digest().subarray(0, MAC_BYTES).toString('base64url'));
  return {
    seal(kind, payload) {
      const body = Buffer.from(JSON.stringify([VERSION, Math.floor(now() / 1000), ...payload])).toString('base64url');
      return `${body}.${mac(keys.current, kind, body)}`;
    },
    open(kind, cursor) {
      if (cursor.length > MAX_CURSOR_LENGTH || !SHAPE.test(cursor)) return NOT_ISSUED;
      const [body, tag] = cursor.split('.');
      const given = Buffer.from(tag);
      if (!secrets.some((s) => timingSafeEqual(mac(s, kind, body), given))) return NOT_ISSUED;
      let content: unknown;
      try {
        content = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
      } catch {
        return NOT_ISSUED;
      }
      if (!Array.isArray(content) || content[0] !== VERSION || !Number.isInteger(content[1])) return NOT_ISSUED;
      const ageMs = now() - (content[1] as number) * 1000;
      if (ageMs > opts.maxAgeMs) return `has expired (cursors are valid for ${Math.round(opts.maxAgeMs / 1000)} s); start again from the first page`;
      if (ageMs < -60_000) return NOT_ISSUED;
      return content.slice(2);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The telemetry cursor: the sort key of the last row of a page (timestamp, metric_name, batch_id,
// line — unique per stored row) plus a fingerprint of the query it came from, so a cursor replayed
// against another GPU, window or metric is refused instead of silently skipping or repeating rows.

const KIND = 'telemetry';

export interface CursorKey {
  /** Epoch milliseconds of the row's timestamp. */
  ts: number;
  metric: string;
  batch: string;
  line: number;
}

export interface CursorScope {
  uuid: string;
  start?: number;
  end?: number;
  metric?: string;
}

/** Short digest of what a page sequence is about; the limit may change between pages. */
export function cursorFingerprint(scope: CursorScope): string {
  const text = JSON.stringify([scope.uuid, scope.start ?? null, scope.end ?? null, scope.metric ?? null]);
  return createHash('sha256').update(text).digest('base64url').slice(0, 16);
}

export function encodeCursor(signer: CursorSigner, key: CursorKey, scope: CursorScope): string {
  return signer.seal(KIND, [cursorFingerprint(scope), key.ts, key.metric, key.batch, key.line]);
}

const payload = z.tuple([
  z.string().length(16),
  z.number().int().min(-62_167_219_200_000).max(253_402_300_799_999),
  z.string().max(1024),
  z.string().max(1024),
  z.number().int().min(0).max(2 ** 32 - 1),
]);

export interface DecodedCursor {
  fingerprint: string;
  key: CursorKey;
}

/** The cursor's content, or a message saying why it is refused. */
export function decodeCursor(signer: CursorSigner, cursor: string): DecodedCursor | string {
  const opened = signer.open(KIND, cursor);
  if (typeof opened === 'string') return opened;
  const parsed = payload.safeParse(opened);
  if (!parsed.success) return NOT_ISSUED;
  const [fingerprint, ts, metric, batch, line] = parsed.data;
  return { fingerprint, key: { ts, metric, batch, line } };
}

// ---------------------------------------------------------------------------------------------
// Listing cursors (/gpus, /hosts, /anomalies): keyset on the listing's sort key (strings, e.g. the
// last uuid of a page) plus a fingerprint of the filters, so a cursor cannot be replayed against
// other filters. One kind per route: a /hosts cursor is refused by /gpus.

export interface ListCursor {
  fingerprint: string;
  key: string[];
}

/** Short digest of a listing's filters (the limit may change between pages). */
export function listFingerprint(filters: unknown): string {
  return createHash('sha256').update(JSON.stringify(filters)).digest('base64url').slice(0, 16);
}

export function encodeListCursor(signer: CursorSigner, kind: string, filters: unknown, key: readonly string[]): string {
  return signer.seal(kind, [listFingerprint(filters), ...key]);
}

const listPayload = z.tuple([z.string().length(16)]).rest(z.string().max(1024));

export function decodeListCursor(signer: CursorSigner, kind: string, cursor: string): ListCursor | string {
  const opened = signer.open(kind, cursor);
  if (typeof opened === 'string') return opened;
  const parsed = listPayload.safeParse(opened);
  if (!parsed.success) return NOT_ISSUED;
  const [fingerprint, ...key] = parsed.data;
  return { fingerprint, key };
}
