import { Module, compress, decompress, init } from '@bokuweb/zstd-wasm';

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

/** The part of the Emscripten module (patches/@bokuweb+zstd-wasm…: exported) used below. */
interface ZstdModule {
  HEAPU8: Uint8Array;
  _malloc(bytes: number): number;
  _free(pointer: number): void;
  _ZSTD_decompress(dst: number, capacity: number, src: number, srcSize: number): number;
  _ZSTD_isError(code: number): number;
}
const wasm = Module as ZstdModule;

/**
 * Inflates one frame into `target` and returns the content's length; throws if the frame is not
 * valid or its content does not fit. zstdReady() first. Why not decompress(): it returns a new
 * buffer per frame, and on this platform (glibc's mmap threshold at 128 KiB, see
 * test/local/stack.ts) fresh memory costs a page fault per 4 KiB on first touch: measured ≈ 15 ms
 * to fill a new 8 MiB buffer against 0.3 ms to refill a reused one (a 2-core VM, 2026-11-23).
 */
export function zstdDecompressInto(frame: Uint8Array, target: Uint8Array): number {
  const src = wasm._malloc(frame.length);
  const dst = wasm._malloc(target.length);
  try {
    if (src === 0 || dst === 0) throw new Error('zstd: out of WebAssembly memory');
    wasm.HEAPU8.set(frame, src);
    const n = wasm._ZSTD_decompress(dst, target.length, src, frame.length);
    if (wasm._ZSTD_isError(n)) throw new Error('zstd: not a valid frame, or its content is larger than the target');
    // HEAPU8 is read again: a malloc that grows the WebAssembly memory replaces its buffer.
    target.set(wasm.HEAPU8.subarray(dst, dst + n));
    return n;
  } finally {
    wasm._free(dst);
    wasm._free(src);
  }
}
