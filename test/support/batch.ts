import { gunzipSync } from 'node:zlib';
import { CloudEvent } from 'cloudevents';
import { SAMPLE_INSERT_COLUMNS } from '../../shared/migrations.ts';
import { EVENT_TYPES } from '../../shared/names.ts';
import { zstdDecompress, zstdReady } from '../../shared/zstd.ts';
import { BATCH_COLUMN_TYPES, BATCH_CONTENT_TYPE, SampleBatchEncoder, compressBatch } from '../../shared/sample-batch.ts';
import { startsAs } from '../../shared/content-encoding.ts';
import { DCGM_COLUMNS, type Sample } from '../../shared/schemas.ts';
import { columnIndexes, validateRecord } from '../../functions/ingest/rows.ts';
import { fixtureRows, type FixtureRow } from './fixtures.ts';

// Reading sample batches back (tests check what producers wrote, row by row) and building batch
// events from the fixture (collect tests), in the one batch format of shared/sample-batch.ts.

type Column = (typeof SAMPLE_INSERT_COLUMNS)[number];
/** One row of a batch: text columns as strings, times in epoch ms, value and line as numbers. */
export type BatchRow = { [K in Column]: K extends 'timestamp' | 'received_at' | 'value' | 'line' ? number : string };

await zstdReady();

/** Decodes a batch body (one zstd frame, gzip — batches before zstd — or plain; one or more Native blocks) into rows. */
export function decodeSampleBatch(body: Uint8Array): BatchRow[] {
  let b = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (startsAs(b, 'gzip')) b = gunzipSync(b);
  else if (startsAs(b, 'zstd')) b = zstdDecompress(b);
  let pos = 0;
  const varint = () => {
    let n = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = b[pos++];
      n += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return n;
    }
  };
  const string = () => {
    const n = varint();
    pos += n;
    return b.toString('utf8', pos - n, pos);
  };
  const rows: BatchRow[] = [];
  while (pos < b.length) {
    const columns = varint();
    const count = varint();
    const block = Array.from({ length: count }, () => ({}) as Record<string, string | number>);
    const names: string[] = [];
    for (let c = 0; c < columns; c++) {
      const name = string() as Column;
      const type = string();
      names.push(name);
      if (type !== BATCH_COLUMN_TYPES[name]) throw new Error(`column ${name} has type ${type}, expected ${BATCH_COLUMN_TYPES[name]}`);
      for (const row of block) {
        if (type === 'String') row[name] = string();
        else if (type === 'Float64') (row[name] = b.readDoubleLE(pos)), (pos += 8);
        else if (type === 'UInt32') (row[name] = b.readUInt32LE(pos)), (pos += 4);
        else (row[name] = Number(b.readBigInt64LE(pos))), (pos += 8);
      }
    }
    if (names.join() !== SAMPLE_INSERT_COLUMNS.join()) throw new Error(`columns ${names.join()} are not SAMPLE_INSERT_COLUMNS`);
    rows.push(...(block as BatchRow[]));
  }
  return rows;
}

/** The fixture rows as validated samples, with their file lines. */
export function fixtureSamples(rows: FixtureRow[] = fixtureRows()): { sample: Sample; line: number }[] {
  const indexes = columnIndexes(DCGM_COLUMNS);
  return rows.map((r) => {
    const v = validateRecord(DCGM_COLUMNS.map((c) => r[c]), indexes);
    if (!v.ok) throw new Error(`fixture line ${r.line}: ${v.reason}`);
    return { sample: v.sample, line: r.line };
  });
}

/** A `samples.batch` CloudEvent as ingest publishes it: `<upload>.<part>.<seq>`, compressed Native. */
export async function sampleBatchEvent(opts: {
  uploadId: string;
  seq: number;
  part?: number;
  samples: { sample: Sample; line: number }[];
  receivedAt?: number;
  /** Changes the uncompressed block (e.g. to corrupt it). */
  alter?: (block: Buffer) => Buffer;
}): Promise<CloudEvent<Buffer>> {
  const id = `${opts.uploadId}.${opts.part ?? 0}.${opts.seq}`;
  const encoder = new SampleBatchEncoder(opts.uploadId, id, opts.receivedAt ?? Date.now(), opts.samples.length);
  for (const { sample, line } of opts.samples) encoder.add(sample, sample.timestamp, line);
  return new CloudEvent({
    id,
    source: '/test',
    type: EVENT_TYPES.samples,
    subject: opts.uploadId,
    datacontenttype: BATCH_CONTENT_TYPE,
    uploadid: opts.uploadId,
    rows: String(opts.samples.length),
    data: await compressBatch((opts.alter ?? ((b) => b))(encoder.finish())),
  });
}
