import { countMarked, repeated, zeroBytes } from '../../shared/byte-words.ts';

// Splits a CSV byte stream into line-aligned parts so several ingest workers can share one
// upload. A cut is made only at a newline outside double quotes (RFC 4180 quoting: a doubled
// quote toggles twice, so parity alone tells whether we are inside a field), hence a quoted
// field with embedded newlines is never split (unless it runs past MAX_QUOTED_PARTS part sizes:
// then the quote is taken as broken). The first record (the header) is returned on its own;
// parts hold records only. Memory: at most MAX_QUOTED_PARTS parts plus one input chunk.
// A part's bytes are copied into one buffer reused from part to part as they arrive, so each input
// chunk dies young: held until its part was complete, 8 MiB of 64 KiB chunks per part were
// promoted and stayed as garbage until a full collection (the upload's peak RSS grew with the
// upload's size, `npm run bench:memory`), and the compressor joined them into a buffer of its own.

export interface CsvPart {
  index: number;
  /** 1-based physical line number of the part's first record in the whole file. */
  firstLine: number;
  /** The part's bytes: a view into a buffer the next part reuses (finish with it, or copy it, before asking for the next part). */
  body: Buffer;
  bytes: number;
}

export interface SplitResult {
  header: string;
  parts: AsyncGenerator<CsvPart>;
}

const QUOTE = 0x22;
const NL = 0x0a;
const EMPTY = Buffer.alloc(0);

/** A part inside an open quote is cut at a newline once it is this many part sizes (of at least 1 MiB) long. */
export const MAX_QUOTED_PARTS = 4;
export const maxQuotedPartBytes = (partBytes: number) => MAX_QUOTED_PARTS * Math.max(partBytes, 1024 * 1024);

interface ScanState {
  quoted: boolean;
  /** Physical line number of the byte scanned next. */
  lines: number;
}

const NL4 = repeated(NL);
const QUOTE4 = repeated(QUOTE);

/**
 * Newlines and quotes in chunk[start, end), added to `state` (lines, and quote parity). Where no
 * cut can fall, this is all splitting needs; it reads four bytes at a time (≈ 0.5 ns per byte,
 * against ≈ 6 for a byte loop), since DCGM rows carry ~60 quotes each and indexOf per quote
 * would be slower still.
 */
function countLinesAndQuotes(chunk: Buffer, start: number, end: number, state: ScanState): void {
  let lines = 0;
  let quotes = 0;
  let i = start;
  const base = chunk.byteOffset;
  for (; i < end && ((base + i) & 3) !== 0; i++) {
    const b = chunk[i];
    if (b === QUOTE) quotes++;
    else if (b === NL) lines++;
  }
  const words = (end - i) >> 2;
  if (words > 0) {
    const w32 = new Int32Array(chunk.buffer, base + i, words);
    for (let k = 0; k < words; k++) {
      const w = w32[k];
      lines += countMarked(zeroBytes(w ^ NL4));
      quotes += countMarked(zeroBytes(w ^ QUOTE4));
    }
    i += words * 4;
  }
  for (; i < end; i++) {
    const b = chunk[i];
    if (b === QUOTE) quotes++;
    else if (b === NL) lines++;
  }
  state.lines += lines;
  if (quotes & 1) state.quoted = !state.quoted;
}

/**
 * The first newline at or after `from` where a part may end (`cutAt` bytes past `from`, or
 * `quotedCutAt` inside quotes), or -1; advances the quote and line state up to it. Bytes before
 * `from + cutAt - 1` cannot hold a cut, so they are only counted (countLinesAndQuotes); the byte
 * loop runs from there. A plain function so that V8 optimizes the loop (in the generator that
 * calls it, it ran unoptimized).
 */
function nextCut(chunk: Buffer, from: number, state: ScanState, cutAt: number, quotedCutAt: number): number {
  const bulkEnd = Math.min(chunk.length, from + Math.max(0, cutAt - 1));
  if (bulkEnd > from) countLinesAndQuotes(chunk, from, bulkEnd, state);
  let quoted = state.quoted;
  let lines = state.lines;
  let cut = -1;
  for (let i = bulkEnd; i < chunk.length; i++) {
    const b = chunk[i];
    if (b === QUOTE) quoted = !quoted;
    else if (b === NL) {
      lines++;
      if (i + 1 - from >= (quoted ? quotedCutAt : cutAt)) {
        cut = i;
        break;
      }
    }
  }
  state.quoted = quoted;
  state.lines = lines;
  return cut;
}

export class CsvTooLargeError extends Error {}
export class CsvHeaderError extends Error {}
/** No line end for too long: the part would grow without bound. */
export class CsvRecordTooLongError extends Error {}

/**
 * @param input byte chunks of the file
 * @param partBytes target part size; a part ends at the first record boundary past it
 * @param maxHeaderBytes the header must end within this many bytes
 * @param maxRecordBytes a part may exceed its cut point (partBytes, or maxQuotedPartBytes inside
 *   quotes) by this much while waiting for a newline; beyond it the input is refused (bounds
 *   memory whatever the input)
 */
export async function splitCsv(
  input: AsyncIterable<Buffer | Uint8Array>,
  partBytes: number,
  maxHeaderBytes = 64 * 1024,
  maxRecordBytes = 1024 * 1024,
): Promise<SplitResult> {
  const it = input[Symbol.asyncIterator]();
  let pending = Buffer.alloc(0);
  let headerEnd = -1;
  let inQuotes = false;
  let scanned = 0;
  let ended = false;
  // Find the end of the header record.
  while (headerEnd < 0) {
    for (let i = scanned; i < pending.length; i++) {
      const b = pending[i];
      if (b === QUOTE) inQuotes = !inQuotes;
      else if (b === NL && !inQuotes) {
        headerEnd = i;
        break;
      }
    }
    scanned = pending.length;
    if (headerEnd >= 0) break;
    if (pending.length > maxHeaderBytes) throw new CsvHeaderError(`the CSV header line is longer than ${maxHeaderBytes} bytes`);
    const next = await it.next();
    if (next.done) {
      ended = true;
      headerEnd = pending.length;
      break;
    }
    pending = Buffer.concat([pending, next.value]);
  }
  if (headerEnd > maxHeaderBytes) throw new CsvHeaderError(`the CSV header line is longer than ${maxHeaderBytes} bytes`);
  let header = pending.subarray(0, headerEnd).toString('utf8');
  if (header.charCodeAt(0) === 0xfeff) header = header.slice(1);
  header = header.replace(/\r$/, '');
  const rest = pending.subarray(Math.min(pending.length, headerEnd + 1));
  inQuotes = false;

  // The current part's bytes; grown (rarely: a part is about partBytes) and kept for the next part.
  let held = Buffer.allocUnsafeSlow(partBytes + 64 * 1024);
  const append = (part: CsvPart, piece: Buffer) => {
    if (part.bytes + piece.length > held.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(part.bytes + piece.length, held.length * 2));
      held.copy(grown, 0, 0, part.bytes);
      held = grown;
    }
    piece.copy(held, part.bytes);
    part.bytes += piece.length;
    part.body = held.subarray(0, part.bytes);
  };

  async function* parts(): AsyncGenerator<CsvPart> {
    let index = 0;
    const line = 2; // the header was line 1
    let current: CsvPart = { index, firstLine: line, body: EMPTY, bytes: 0 };
    const quotedExtra = maxQuotedPartBytes(partBytes) - partBytes;
    const state: ScanState = { quoted: inQuotes, lines: line };
    const feed = function* (chunk: Buffer): Generator<CsvPart> {
      let start = 0;
      let cutAt = partBytes - current.bytes; // bytes from `start` after which a newline ends the part
      for (;;) {
        // Inside quotes a part is cut only past MAX_QUOTED_PARTS part sizes: a stray quote must
        // not turn the rest of the file into one part held in memory here and in ingest (which
        // reports the unbalanced quote as malformed CSV).
        const cut = nextCut(chunk, start, state, cutAt, cutAt + quotedExtra);
        if (cut < 0) break;
        append(current, chunk.subarray(start, cut + 1));
        yield current;
        start = cut + 1;
        current = { index: ++index, firstLine: state.lines, body: EMPTY, bytes: 0 };
        cutAt = partBytes;
      }
      if (start < chunk.length) append(current, chunk.subarray(start));
      // Whatever the quoting, a part has a newline to end at within a bound: a body without one
      // would otherwise be held whole.
      const limit = (state.quoted ? maxQuotedPartBytes(partBytes) : partBytes) + maxRecordBytes;
      if (current.bytes > limit) {
        throw new CsvRecordTooLongError(`a CSV record near line ${state.lines} is longer than ${maxRecordBytes} bytes (no line end${state.quoted ? ' after an open quote' : ''})`);
      }
    };
    if (rest.length) yield* feed(Buffer.from(rest));
    while (!ended) {
      const next = await it.next();
      if (next.done) break;
      yield* feed(Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value));
    }
    if (current.body.some((b) => b !== NL && b !== 0x0d && b !== 0x20)) yield current;
  }

  return { header, parts: parts() };
}
