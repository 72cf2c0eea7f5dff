// Recognising a compressed body by its first bytes: collect checks a batch before ClickHouse sees
// it, ingest an upload part before inflating it, and the tests' batch decoder picks its inflater.

/** The first bytes of a body in each encoding. */
const ENCODING_MAGIC: Readonly<Record<string, readonly number[]>> = { zstd: [0x28, 0xb5, 0x2f, 0xfd], gzip: [0x1f, 0x8b] };

/** Whether `body` starts as a body in `encoding` (zstd or gzip) does. */
export const startsAs = (body: Uint8Array, encoding: string): boolean => ENCODING_MAGIC[encoding]?.every((b, i) => body[i] === b) ?? false;
