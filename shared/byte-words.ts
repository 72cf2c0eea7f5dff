// Byte tests on four bytes at once: `w` is a 32-bit word read from a byte buffer, and a byte
// equal to b is a zero byte of `w ^ (b * 0x01010101)`. Used by the hot byte loops (the upload's
// split, ingest's scanner, the batch encoder) to skip runs of plain bytes a word per step.

/** The high bit of every byte. */
export const HIGH_BITS = 0x80808080 | 0;

/** The four-byte word made of `byte` repeated (the pattern to XOR a word with). */
export const repeated = (byte: number): number => Math.imul(byte, 0x01010101);

/**
 * Whether `x` has a zero byte: `zeroByteIn(x) & HIGH_BITS` is non-zero exactly when it has one
 * (x − 0x01 borrows into the high bit of the first zero byte; bytes after it may be marked too).
 */
export const zeroByteIn = (x: number): number => (x - 0x01010101) & ~x;

/** The high bit of each zero byte of `x` and of no other byte (exact, for counting). */
export const zeroBytes = (x: number): number => ~(((x & 0x7f7f7f7f) + 0x7f7f7f7f) | x | 0x7f7f7f7f);

/** How many bytes a zeroBytes() mask marks (0–4). */
export const countMarked = (mask: number): number => Math.imul(mask >>> 7, 0x01010101) >>> 24;
