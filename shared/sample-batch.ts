import { endianness } from 'node:os';
import type { JetStreamClient, PubAck } from 'nats';
import { HIGH_BITS, repeated, zeroByteIn } from './byte-words.ts';
import { binaryMessage, toNatsHeaders } from './cloudevents-nats.ts';
import type { SAMPLE_INSERT_COLUMNS } from './migrations.ts';
import { EVENT_TYPES, SUBJECTS } from './names.ts';
import { zstdCompress, zstdReady } from './zstd.ts';
import type { Sample } from './schemas.ts';

// The one encoding of sample batches on the telemetry stream, used by every producer (ingest for
// CSV parts, remote write for Prometheus series) and inserted by collect as it arrives: one
// ClickHouse `Native` block per batch (columns in SAMPLE_INSERT_COLUMNS order, shared/migrations.ts),
// zstd-compressed, in one CloudEvent `samples.batch` whose id (`<source>.<part>.<seq>`) is also its
// Nats-Msg-Id, so a retried producer is deduplicated.
// Why Native: ClickHouse inserts it for ≈ 3.2 µs/row (views included) against ≈ 5.7 for the
// TabSeparated text it replaced and ≈ 5.1 for RowBinary, and it is built straight from bytes.
// Why zstd (level 1): a columnar block shrinks ≈ 40× (453 → 11 bytes/row), so nats-server and
// collect move a fraction of the bytes; zstd frames concatenate into one valid stream, so collect
// sends a group of batches to ClickHouse as they are (Content-Encoding: zstd) without touching them.
// It replaced gzip level 1 (41 bytes/row), measured on a 5,000-row batch of the bundled sample:
// 0.80 µs/row to compress against 1.34–1.62 (WebAssembly zstd; a native zstd addon, 0.45, would
// need a compiler in the image), and ClickHouse inflates it for less.
// LowCardinality columns travel as plain String (ClickHouse converts at insert; dictionaries
// would cost more in JavaScript than they save in ClickHouse).

export const BATCH_CONTENT_TYPE = 'application/vnd.clickhouse.native+zstd';
export const BATCH_CLICKHOUSE_FORMAT = 'Native';
export const BATCH_CONTENT_ENCODING = 'zstd';
/** The gzip batches written before zstd: collect still inserts them (a rolling upgrade). */
export const GZIP_BATCH_CONTENT_TYPE = 'application/vnd.clickhouse.native+gzip';

type InsertColumn = (typeof SAMPLE_INSERT_COLUMNS)[number];

/** The Native type each column is sent as (what the decoder in tests reads back). */
export const BATCH_COLUMN_TYPES: Readonly<Record<InsertColumn, string>> = {
  timestamp: "DateTime64(3, 'UTC')",
  metric_name: 'String',
  gpu_id: 'String',
  device: 'String',
  uuid: 'String',
  model_name: 'String',
  hostname: 'String',
  container: 'String',
  pod: 'String',
  namespace: 'String',
  value: 'Float64',
  labels_raw: 'String',
  upload_id: 'String',
  batch_id: 'String',
  line: 'UInt32',
  received_at: "DateTime64(3, 'UTC')",
};

/** The per-row text columns, in insert order; `TEXT[i]` is what `text(i, …)` writes. */
export const TEXT_COLUMNS = ['metric_name', 'gpu_id', 'device', 'uuid', 'model_name', 'hostname', 'container', 'pod', 'namespace', 'labels_raw'] as const;
const SAMPLE_TEXT: readonly (keyof Sample)[] = ['metric_name', 'gpu_id', 'device', 'uuid', 'modelName', 'Hostname', 'container', 'pod', 'namespace', 'labels_raw'];

if (endianness() !== 'LE') throw new Error('sample batches are written with little-endian typed arrays');

const QUOTE = 0x22;
const QUOTE4 = repeated(QUOTE);

/** A DataView of the last source given to TextColumn.bytes (one part's bytes serve many rows). */
let sourceBytes: Uint8Array | undefined;
let sourceView: DataView = new DataView(new ArrayBuffer(0));
const viewOf = (src: Uint8Array): DataView => {
  if (src !== sourceBytes) {
    sourceBytes = src;
    sourceView = new DataView(src.buffer, src.byteOffset, src.length);
  }
  return sourceView;
};

/** A growable byte column: varint-prefixed strings, as Native String columns are laid out. */
class TextColumn {
  buf: Buffer;
  /** The same bytes as `buf`, for copies four bytes at a time. */
  view: DataView;
  pos = 0;
  constructor(capacity: number) {
    this.buf = Buffer.allocUnsafe(capacity);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
  }

  private grow(need: number): void {
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + need));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.length);
  }

  private length(n: number): void {
    const b = this.buf;
    while (n >= 0x80) {
      b[this.pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    b[this.pos++] = n;
  }

  string(s: string): void {
    const n = Buffer.byteLength(s);
    if (this.pos + n + 5 > this.buf.length) this.grow(n + 5);
    this.length(n);
    this.pos += this.buf.write(s, this.pos, n, 'utf8');
  }

  /**
   * The bytes src[start, end); with `escapes` > 0 the range is quoted CSV content whose `""` pairs
   * become `"`. Short and escaped ranges are copied four bytes at a time (little-endian words
   * through DataViews, which V8 compiles to plain loads and stores): ≈ 1.0 against 1.3–1.7 ns
   * per byte one at a time; a word with a quote in it goes byte by byte.
   */
  bytes(src: Uint8Array, start: number, end: number, escapes: number): void {
    const n = end - start - escapes;
    if (this.pos + n + 5 > this.buf.length) this.grow(n + 5);
    this.length(n);
    const b = this.buf;
    const out = this.view;
    let p = this.pos;
    let i = start;
    if (escapes > 0) {
      const v = viewOf(src);
      while (i + 4 <= end) {
        const w = v.getUint32(i, true);
        if ((zeroByteIn(w ^ QUOTE4) & HIGH_BITS) === 0) {
          out.setUint32(p, w, true);
          p += 4;
          i += 4;
        } else {
          const c = src[i];
          b[p++] = c;
          i += c === QUOTE ? 2 : 1; // the second quote of a pair is skipped
        }
      }
      for (; i < end; i++) {
        const c = src[i];
        b[p++] = c;
        if (c === QUOTE) i++;
      }
    } else if (n < 48) {
      const v = viewOf(src);
      for (; i + 4 <= end; i += 4, p += 4) out.setUint32(p, v.getUint32(i, true), true);
      for (; i < end; i++) b[p++] = src[i];
    } else {
      b.set(src.subarray(start, end), p);
      p += n;
    }
    this.pos = p;
  }
}

const varintLength = (n: number) => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5);

function writeVarint(b: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    b[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  b[pos++] = n;
  return pos;
}

/** A varint-prefixed string as one Buffer (column names, type names, constant column values). */
function lengthPrefixed(s: string): Buffer {
  const bytes = Buffer.from(s, 'utf8');
  const out = Buffer.allocUnsafe(varintLength(bytes.length) + bytes.length);
  bytes.copy(out, writeVarint(out, 0, bytes.length));
  return out;
}

const COLUMN_HEADERS = Object.fromEntries(
  Object.entries(BATCH_COLUMN_TYPES).map(([name, type]) => [name, Buffer.concat([lengthPrefixed(name), lengthPrefixed(type)])]),
) as Record<InsertColumn, Buffer>;

/** Int64 little-endian from a (safe-integer) number, into an Int32 pair view. */
function int64At(words: Int32Array, i: number, n: number): void {
  const hi = Math.floor(n / 4294967296);
  words[2 * i] = n - hi * 4294967296;
  words[2 * i + 1] = hi;
}

/**
 * Accumulates the rows of one batch; `finish()` gives the (uncompressed) Native block to publish.
 * Producers with a validated `Sample` call `add`; ingest's byte-level path calls `row` and then
 * `textBytes` for each of the TEXT_COLUMNS, straight from the CSV bytes. `restart` reuses the
 * column buffers for the next batch.
 */
export class SampleBatchEncoder {
  private readonly text: TextColumn[];
  private times: Float64Array;
  private values: Float64Array;
  private lines: Uint32Array;
  private count = 0;
  /** finishReused()'s buffer. */
  private block = Buffer.allocUnsafe(0);

  constructor(
    public sourceId: string,
    public batchId: string,
    private receivedAtMs: number,
    expectedRows = 1024,
  ) {
    // Initial sizes from the DCGM exporter's rows (labels_raw ≈ 300 bytes, names ≤ 40).
    this.text = TEXT_COLUMNS.map((c) => new TextColumn(expectedRows * (c === 'labels_raw' ? 320 : 40)));
    this.times = new Float64Array(expectedRows);
    this.values = new Float64Array(expectedRows);
    this.lines = new Uint32Array(expectedRows);
  }

  get rows(): number {
    return this.count;
  }

  /** Starts a row with its numeric columns; the text columns follow (text/textBytes for each of TEXT_COLUMNS). */
  row(timestampMs: number, value: number, line: number): void {
    const i = this.count++;
    if (i === this.times.length) {
      const grow = <T extends Float64Array | Uint32Array>(a: T): T => {
        const next = new (a.constructor as new (n: number) => T)(a.length * 2);
        next.set(a);
        return next;
      };
      this.times = grow(this.times);
      this.values = grow(this.values);
      this.lines = grow(this.lines);
    }
    this.times[i] = timestampMs;
    this.values[i] = value;
    this.lines[i] = line;
  }

  /** Text column `column` (index into TEXT_COLUMNS) of the current row, from a string. */
  textString(column: number, s: string): void {
    this.text[column].string(s);
  }

  /** Text column `column` of the current row, from bytes (see TextColumn.bytes for `escapes`). */
  textBytes(column: number, src: Uint8Array, start: number, end: number, escapes: number): void {
    this.text[column].bytes(src, start, end, escapes);
  }

  /** `timestampMs` is the stored time (the sample's own, or the processing time when re-stamping). */
  add(s: Sample, timestampMs: number, line: number): void {
    this.row(timestampMs, s.value, line);
    for (let c = 0; c < SAMPLE_TEXT.length; c++) this.text[c].string(s[SAMPLE_TEXT[c]] as string);
  }

  /** The batch as one Native block in a new buffer (uncompressed; publishSampleBatch compresses it). */
  finish(): Buffer {
    const layout = this.layout();
    return this.writeBlock(Buffer.allocUnsafe(layout.size), layout);
  }

  /**
   * The batch as one Native block in a buffer this encoder reuses: valid only until its next
   * finishReused() (compress it at once). Filling a new ≈ 2 MiB buffer per 5,000-row batch cost
   * a page fault per 4 KiB (see shared/zstd.ts); ingest compresses every block this way.
   */
  finishReused(): Buffer {
    const layout = this.layout();
    if (this.block.length < layout.size) this.block = Buffer.allocUnsafe(Math.ceil((layout.size * 1.25) / 65536) * 65536);
    return this.writeBlock(this.block.subarray(0, layout.size), layout);
  }

  /** The block's size, and its two constant column values (each repeated on every row). */
  private layout(): { size: number; upload: Buffer; batch: Buffer } {
    const n = this.count;
    const upload = lengthPrefixed(this.sourceId);
    const batch = lengthPrefixed(this.batchId);
    let size = varintLength(16) + varintLength(n) + 8 * n * 3 + 4 * n + (upload.length + batch.length) * n;
    for (const h of Object.values(COLUMN_HEADERS)) size += h.length;
    for (const t of this.text) size += t.pos;
    return { size, upload, batch };
  }

  /** Writes the block into `out` (exactly `layout.size` bytes) and returns it. */
  private writeBlock(out: Buffer, { size, upload, batch }: { size: number; upload: Buffer; batch: Buffer }): Buffer {
    const n = this.count;
    let pos = writeVarint(out, writeVarint(out, 0, 16), n);
    const header = (c: InsertColumn) => {
      pos += COLUMN_HEADERS[c].copy(out, pos);
    };
    const int64s = (c: InsertColumn, get: (i: number) => number) => {
      header(c);
      const words = new Int32Array(2 * n);
      for (let i = 0; i < n; i++) int64At(words, i, get(i));
      pos += Buffer.from(words.buffer, 0, 8 * n).copy(out, pos);
    };
    const texts = (from: number, to: number) => {
      for (let c = from; c < to; c++) {
        header(TEXT_COLUMNS[c]);
        pos += this.text[c].buf.copy(out, pos, 0, this.text[c].pos);
      }
    };
    const constant = (c: InsertColumn, value: Buffer) => {
      header(c);
      if (n > 0) out.fill(value, pos, pos + value.length * n);
      pos += value.length * n;
    };
    int64s('timestamp', (i) => this.times[i]);
    texts(0, 9);
    header('value');
    pos += Buffer.from(this.values.buffer, 0, 8 * n).copy(out, pos);
    texts(9, 10);
    constant('upload_id', upload);
    constant('batch_id', batch);
    header('line');
    pos += Buffer.from(this.lines.buffer, 0, 4 * n).copy(out, pos);
    const received = new Int32Array(2);
    int64At(received, 0, this.receivedAtMs);
    constant('received_at', Buffer.from(received.buffer));
    if (pos !== size) throw new Error(`batch encoding wrote ${pos} of ${size} bytes`);
    return out;
  }

  /** Empties the encoder for the next batch (keeps its buffers); the source may change too. */
  restart(batchId: string, source?: { sourceId: string; receivedAtMs: number }): void {
    if (source) {
      this.sourceId = source.sourceId;
      this.receivedAtMs = source.receivedAtMs;
    }
    this.batchId = batchId;
    this.count = 0;
    for (const t of this.text) t.pos = 0;
  }
}

/** A batch id, `<source>.<part>.<seq>` (what every producer writes and collect accepts). */
export const BATCH_ID = /^[\w-]+\.\d+\.\d+$/;

export interface EncodedBatch {
  /** `<source>.<part>.<seq>` (BATCH_ID): deterministic, so a retry publishes the same id. */
  id: string;
  /** The upload (or remote-write request) the rows came from; the CloudEvent subject. */
  sourceId: string;
  rows: number;
  /** The Native block from SampleBatchEncoder.finish(): uncompressed, or its zstd frame when `compressed`. */
  body: Uint8Array;
  compressed?: true;
}

/** zstd level 1, one frame per batch (on the event loop: ≈ 4 ms for 5,000 rows). zstdReady() first. */
export const compressBlock = (body: Uint8Array): Buffer => zstdCompress(body, 1);

/** compressBlock once zstd is loaded. */
export async function compressBatch(body: Uint8Array): Promise<Buffer> {
  await zstdReady();
  return compressBlock(body);
}

/** Publishes one batch (compressed) as a binary-mode CloudEvent; resolves once JetStream has stored it. */
export async function publishSampleBatch(js: JetStreamClient, batch: EncodedBatch, source: string, timeoutMs = 30_000): Promise<PubAck> {
  const msg = binaryMessage(
    {
      id: batch.id,
      source,
      type: EVENT_TYPES.samples,
      subject: batch.sourceId,
      datacontenttype: BATCH_CONTENT_TYPE,
      uploadid: batch.sourceId,
      rows: String(batch.rows),
    },
    batch.compressed ? batch.body : await compressBatch(batch.body),
  );
  return js.publish(SUBJECTS.samples, msg.body, { headers: toNatsHeaders(msg), msgID: batch.id, timeout: timeoutMs });
}
