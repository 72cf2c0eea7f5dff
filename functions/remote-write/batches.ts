import { storeTimeProblem } from '../../shared/sample-rules.ts';
import { SampleBatchEncoder, type EncodedBatch } from '../../shared/sample-batch.ts';
import { SeriesCache, sampleOf, type SeriesResult } from './labels.ts';
import { forEachTimeSeries } from './proto.ts';

// A decoded remote-write body → the sample batches to publish, with counts. Pure: nothing is
// published until the whole request has decoded, so a malformed request stores nothing.

export const DROP_REASONS = ['no_uuid', 'stale', 'non_finite', 'invalid', 'histogram'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export interface RequestBatches {
  batches: EncodedBatch[];
  /** Samples in the request (float samples plus native-histogram samples). */
  received: number;
  accepted: number;
  dropped: Record<DropReason, number>;
  /** What was wrong with the first invalid series or sample, for the access log. */
  firstProblem?: string;
}

const bits = new DataView(new ArrayBuffer(8));
/**
 * Prometheus marks a series stale with the NaN 0x7ff0000000000002. Reading a signalling NaN
 * may set its quiet bit (V8 gives 0x7ff8…02), so the quiet bit is ignored.
 */
export function isStaleMarker(v: number): boolean {
  if (!Number.isNaN(v)) return false;
  bits.setFloat64(0, v);
  return (bits.getUint32(0) & 0xfff7ffff) === 0x7ff00000 && bits.getUint32(4) === 2;
}

/**
 * Maps every sample of a WriteRequest. Batch ids are `<sourceId>.0.<seq>` where sourceId is
 * derived from the request content, so a retried request yields the same ids (and the same
 * rows: `line` is the sample's index in the request, whose order is fixed).
 */
export function requestBatches(
  body: Uint8Array,
  opts: { sourceId: string; receivedAt: number; batchRows: number; series?: SeriesCache },
): RequestBatches {
  const cache = opts.series ?? new SeriesCache(0);
  const dropped = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
  const batches: EncodedBatch[] = [];
  let received = 0;
  let accepted = 0;
  let firstProblem: string | undefined;
  let line = 0;
  const newEncoder = () => new SampleBatchEncoder(opts.sourceId, `${opts.sourceId}.0.${batches.length}`, opts.receivedAt);
  let encoder = newEncoder();
  const flush = () => {
    if (encoder.rows === 0) return;
    batches.push({ id: encoder.batchId, sourceId: opts.sourceId, rows: encoder.rows, body: encoder.finish() });
    encoder = newEncoder();
  };

  forEachTimeSeries(body, (ts) => {
    const histograms = ts.histograms?.length ?? 0;
    received += histograms;
    dropped.histogram += histograms;
    if (ts.samples.length === 0) return;
    const series: SeriesResult = cache.map(ts.labels);
    if (!series.ok) {
      received += ts.samples.length;
      dropped[series.reason] += ts.samples.length;
      line += ts.samples.length;
      if (series.reason === 'invalid') firstProblem ??= series.problem;
      return;
    }
    for (const { value, timestamp } of ts.samples) {
      received++;
      const at = line++;
      if (!Number.isFinite(value)) {
        dropped[isStaleMarker(value) ? 'stale' : 'non_finite']++;
        continue;
      }
      const timeProblem = storeTimeProblem(timestamp);
      if (timeProblem) {
        dropped.invalid++;
        firstProblem ??= `timestamp ${timeProblem}`;
        continue;
      }
      encoder.add(sampleOf(series.fields, timestamp, value), timestamp, at);
      accepted++;
      if (encoder.rows >= opts.batchRows) flush();
    }
  });
  flush();
  return { batches, received, accepted, dropped, firstProblem };
}
