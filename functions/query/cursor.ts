import { createHash } from 'node:crypto';
import { z } from 'zod';

// Keyset pagination for /telemetry. A cursor holds the sort key of the last row of a page
// (timestamp, metric_name, batch_id, line — unique per stored row) plus a fingerprint of the
// query it came from, so a cursor replayed against another GPU, window or metric is refused
// instead of silently skipping or repeating rows. It is base64url JSON: opaque to clients,
// not secret (it only ever becomes bound SQL parameters).

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

const VERSION = 1;
export const MAX_CURSOR_LENGTH = 1024;

/** Short digest of what a page sequence is about; the limit may change between pages. */
export function cursorFingerprint(scope: CursorScope): string {
  const text = JSON.stringify([scope.uuid, scope.start ?? null, scope.end ?? null, scope.metric ?? null]);
  return createHash('sha256').update(text).digest('base64url').slice(0, 16);
}

export function encodeCursor(key: CursorKey, scope: CursorScope): string {
  const payload = [VERSION, cursorFingerprint(scope), key.ts, key.metric, key.batch, key.line];
  return Buffer.from(JSON.stringify(payload)).toString('base64url');
}

const payload = z.tuple([
  z.literal(VERSION),
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

/** The cursor's content, or a message saying why it is not a cursor this API issued. */
export function decodeCursor(cursor: string): DecodedCursor | string {
  const malformed = 'is not a cursor returned by this API (use next_cursor from the previous page unchanged)';
  if (cursor.length === 0 || cursor.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) return malformed;
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    return malformed;
  }
  const parsed = payload.safeParse(json);
  if (!parsed.success) return malformed;
  const [, fingerprint, ts, metric, batch, line] = parsed.data;
  return { fingerprint, key: { ts, metric, batch, line } };
}
