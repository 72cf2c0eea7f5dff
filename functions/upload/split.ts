// Splits a CSV byte stream into line-aligned parts so several ingest workers can share one
// upload. A cut is made only at a newline outside double quotes (RFC 4180 quoting: a doubled
// quote toggles twice, so parity alone tells whether we are inside a field), hence a quoted
// field with embedded newlines is never split. The first record (the header) is returned on
// its own; parts hold records only. Memory: at most one part plus one input chunk.

export interface CsvPart {
  index: number;
  /** 1-based physical line number of the part's first record in the whole file. */
  firstLine: number;
  chunks: Buffer[];
  bytes: number;
}

export interface SplitResult {
  header: string;
  parts: AsyncGenerator<CsvPart>;
}

const QUOTE = 0x22;
const NL = 0x0a;

export class CsvTooLargeError extends Error {}
export class CsvHeaderError extends Error {}

/**
 * @param input byte chunks of the file
 * @param partBytes target part size; a part ends at the first record boundary past it
 * @param maxHeaderBytes the header must end within this many bytes
 */
export async function splitCsv(input: AsyncIterable<Buffer | Uint8Array>, partBytes: number, maxHeaderBytes = 64 * 1024): Promise<SplitResult> {
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
  let header = pending.subarray(0, headerEnd).toString('utf8');
  if (header.charCodeAt(0) === 0xfeff) header = header.slice(1);
  header = header.replace(/\r$/, '');
  const rest = pending.subarray(Math.min(pending.length, headerEnd + 1));
  inQuotes = false;

  async function* parts(): AsyncGenerator<CsvPart> {
    let index = 0;
    let line = 2; // the header was line 1
    let current: CsvPart = { index, firstLine: line, chunks: [], bytes: 0 };
    const feed = function* (chunk: Buffer): Generator<CsvPart> {
      let start = 0;
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i];
        if (b === QUOTE) inQuotes = !inQuotes;
        else if (b === NL) {
          line++;
          if (!inQuotes && current.bytes + (i + 1 - start) >= partBytes) {
            const piece = chunk.subarray(start, i + 1);
            current.chunks.push(piece);
            current.bytes += piece.length;
            yield current;
            start = i + 1;
            current = { index: ++index, firstLine: line, chunks: [], bytes: 0 };
          }
        }
      }
      if (start < chunk.length) {
        const piece = chunk.subarray(start);
        current.chunks.push(piece);
        current.bytes += piece.length;
      }
    };
    if (rest.length) yield* feed(Buffer.from(rest));
    while (!ended) {
      const next = await it.next();
      if (next.done) break;
      yield* feed(Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value));
    }
    if (current.bytes > 0 && current.chunks.some((c) => c.some((b) => b !== NL && b !== 0x0d && b !== 0x20))) yield current;
  }

  return { header, parts: parts() };
}
