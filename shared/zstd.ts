import { compress, decompress, init } from '@bokuweb/zstd-wasm';

// zstd (WebAssembly build of the reference library) for sample batches. Its init() instantiates
// the module again on every call, and a second instantiation under work in flight leaves the
// module writing into the memory it replaced (seen as batches of zeros): so one init per process.

let ready: Promise<void> | undefined;

/** Resolves once zstd is usable; call before zstdCompress/zstdDecompress. */
export const zstdReady = (): Promise<void> =>
  (ready ??= init().catch((e: unknown) => {
    throw new Error(`zstd could not be loaded (the bundles need zstd.wasm beside them, as npm run build puts it): ${e instanceof Error ? e.message : String(e)}`);
  }));

/** One zstd frame of `body` at `level` (1: ≈ 0.8 µs per sample row). zstdReady() first. */
export function zstdCompress(body: Uint8Array, level: number): Buffer {
  const frame = compress(body, level);
  return Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
}

/** The content of one zstd frame (tests read batches back). zstdReady() first. */
export const zstdDecompress = (frame: Uint8Array): Buffer => {
  const out = decompress(frame);
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
};
