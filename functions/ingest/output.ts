import type { PubAck } from 'nats';
import { SampleBatchEncoder, compressBlock, type EncodedBatch } from '../../shared/sample-batch.ts';
import { zstdReady } from '../../shared/zstd.ts';
import type { PartResult, RejectReason, Sample, UploadedPart } from '../../shared/schemas.ts';
import type { IngestConfig } from './config.ts';

// What one part produces: batches of accepted rows (ids `<upload>.<part>.<seq>`, published with a
// bounded window so parsing continues while earlier batches are stored) and the rejected rows'
// count and first reasons. Both parsing paths write here.

export type Publish = (batch: EncodedBatch) => Promise<PubAck>;

export class PartOutput {
  readonly encoder: SampleBatchEncoder;
  private readonly rejects: RejectReason[] = [];
  private readonly inFlight = new Set<Promise<PubAck>>();
  private firstError: unknown;
  private accepted = 0;
  private rejected = 0;
  private seq = 0;
  /** Re-stamp rows with the processing time. */
  readonly restamp: boolean;

  /** @param encoder one to reuse (the previous part's), so its column buffers are not allocated again */
  constructor(
    private readonly cfg: IngestConfig,
    private readonly data: UploadedPart,
    private readonly publish: Publish,
    encoder?: SampleBatchEncoder,
  ) {
    this.restamp = data.restamp || cfg.INGEST_TIMESTAMP_MODE === 'processing';
    this.encoder = encoder ?? new SampleBatchEncoder(data.uploadId, this.batchId(0), data.receivedAt, cfg.INGEST_BATCH_ROWS);
    this.encoder.restart(this.batchId(0), { sourceId: data.uploadId, receivedAtMs: data.receivedAt });
  }

  private batchId(seq: number): string {
    return `${this.data.uploadId}.${this.data.part}.${seq}`;
  }

  reject(line: number, reason: string): void {
    this.rejected++;
    if (this.rejects.length < this.cfg.INGEST_MAX_REJECT_REASONS) this.rejects.push({ line, reason });
  }

  /** A row the byte-level path wrote into `encoder` itself; true when the batch is full (then flush()). */
  added(): boolean {
    this.accepted++;
    return this.encoder.rows >= this.cfg.INGEST_BATCH_ROWS;
  }

  /** A validated sample (the reference path). */
  async add(sample: Sample, line: number): Promise<void> {
    this.encoder.add(sample, this.restamp ? Date.now() : sample.timestamp, line);
    if (this.added()) await this.flush();
  }

  /** Publishes the batch so far (waiting while INGEST_PUBLISH_WINDOW batches are in flight). */
  async flush(): Promise<void> {
    const e = this.encoder;
    if (e.rows === 0) return;
    // Compressed here, right after finishReused(), so the encoder's reused block buffer can be
    // refilled at once (nothing adds rows while flush is awaited).
    await zstdReady();
    const done: EncodedBatch = { id: e.batchId, sourceId: this.data.uploadId, rows: e.rows, body: compressBlock(e.finishReused()), compressed: true };
    e.restart(this.batchId(++this.seq));
    const p = this.publish(done);
    this.inFlight.add(p);
    p.then(() => this.inFlight.delete(p), (err) => (this.firstError ??= err));
    // Bounded window: parsing continues while earlier batches are being stored.
    while (this.inFlight.size >= this.cfg.INGEST_PUBLISH_WINDOW && this.firstError === undefined) await Promise.race(this.inFlight).catch(() => undefined);
    if (this.firstError !== undefined) throw this.firstError;
  }

  /** Publishes the last batch, waits for every publish and returns the part's counts. */
  async end(): Promise<PartResult> {
    await this.flush();
    await Promise.all(this.inFlight);
    if (this.firstError !== undefined) throw this.firstError;
    return { part: this.data.part, state: 'done', accepted: this.accepted, rejected: this.rejected, batches: this.seq, rejects: this.rejects };
  }
}
