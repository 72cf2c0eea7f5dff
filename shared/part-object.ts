import type { ObjectInfo } from './object-store.ts';
import { startsAs } from './content-encoding.ts';
import { zstdCompress, zstdDecompressInto, zstdReady } from './zstd.ts';

// How the upload stores a CSV part in the object store and ingest reads it back: one zstd frame
// (level 1) of the part's bytes, marked by the object's `Content-Encoding: zstd` header (ADR-20
// object meta headers; `nats object get` gives the frame, `zstd -d` the CSV). Why: the part
// crosses nats-server twice (put, then get) and ingest hashed and copied every byte; DCGM CSV
// shrinks ≈ 10× (the bundled sample; ≈ 28× the benchmark file) for ≈ 0.45 µs per row to compress
// and ≈ 0.2 to decompress. Objects without the header (stored before) are read as they are.

export const PART_ENCODING = 'zstd';
/** The meta headers of a compressed part. */
export const PART_HEADERS: Readonly<Record<string, string[]>> = { 'Content-Encoding': [PART_ENCODING] };

/** Whether a stored part is a zstd frame (else its bytes are the CSV itself). */
export const isCompressedPart = (info: ObjectInfo): boolean => info.headers?.['Content-Encoding']?.includes(PART_ENCODING) ?? false;

/** The stored form of a part given as its bytes (read at once: the caller may reuse `body` after). */
export async function compressPart(body: Buffer): Promise<Buffer> {
  await zstdReady();
  return zstdCompress(body, 1);
}

/**
 * The CSV bytes of a compressed part, inflated into `into` when it is large enough (ingest reuses
 * one buffer from part to part: see zstdDecompressInto); throws if the frame is not one or not
 * `bytes` long.
 */
export async function decompressPart(stored: Buffer, bytes: number, into?: Buffer): Promise<Buffer> {
  await zstdReady();
  // One byte more than announced, so a longer content is told apart from a corrupt frame.
  const target = into && into.length > bytes ? into.subarray(0, bytes + 1) : Buffer.allocUnsafe(bytes + 1);
  let length: number;
  try {
    if (!startsAs(stored, PART_ENCODING)) throw new Error('no zstd magic');
    length = zstdDecompressInto(stored, target);
  } catch {
    throw new Error(`is not a valid zstd frame of at most ${bytes + 1} bytes`);
  }
  if (length !== bytes) throw new Error(`holds ${length} bytes, not the ${bytes} announced`);
  return target.subarray(0, length);
}
