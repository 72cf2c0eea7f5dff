import { describe, expect, it } from 'vitest';
import { DROP_REASONS, isStaleMarker, requestBatches } from '../functions/remote-write/batches.ts';
import { SeriesCache, labelsRaw, mapSeries } from '../functions/remote-write/labels.ts';
import { decodeWriteRequest, encodeWriteRequest, type Label, type TimeSeries } from '../functions/remote-write/proto.ts';
import { BATCH_ID, SampleBatchEncoder } from '../shared/sample-batch.ts';
import { dcgmRow } from '../shared/schemas.ts';
import { parseLabelsRaw, rowLabels, rowSeries } from './support/dcgm-series.ts';
import { fixtureRows } from './support/fixtures.ts';
import { decodeSampleBatch } from './support/batch.ts';

// Pure parts of remote write: a Prometheus series → the row ingest would store for the same
// DCGM data, drop rules (no UUID, staleness markers, NaN/Inf, invalid), deterministic batches.

const rows = fixtureRows();
const STALE_NAN = (() => {
  const v = new DataView(new ArrayBuffer(8));
  v.setUint32(0, 0x7ff00000);
  v.setUint32(4, 2);
  return v.getFloat64(0);
})();
const label = (name: string, value: string): Label => ({ name, value });
const gpuLabels = (extra: Label[] = []): Label[] =>
  [label('__name__', 'DCGM_FI_DEV_GPU_TEMP'), label('UUID', 'GPU-x'), label('gpu', '0'), ...extra].sort((a, b) => (a.name < b.name ? -1 : 1));
const body = (timeseries: TimeSeries[]) => encodeWriteRequest({ timeseries });

describe('series → DCGM row fields', () => {
  it('rebuilds every labels_raw of the bundled sample exactly from its labels', () => {
    for (const r of rows) expect(labelsRaw(parseLabelsRaw(r.labels_raw))).toBe(r.labels_raw);
  });

  it('maps each sample series to the same fields ingest stores for its CSV row', () => {
    for (const r of rows) {
      const mapped = mapSeries(rowLabels(r));
      const { timestamp: _t, value: _v, ...expected } = dcgmRow.parse(r);
      expect(mapped).toEqual({ ok: true, fields: expected });
    }
  });

  it('takes Hostname, or hostname from newer exporters (Hostname wins when both exist)', () => {
    const lower = mapSeries(gpuLabels([label('hostname', 'node-a')]));
    expect(lower.ok && lower.fields.Hostname).toBe('node-a');
    const both = mapSeries(gpuLabels([label('Hostname', 'node-b'), label('hostname', 'node-a')]));
    expect(both.ok && both.fields.Hostname).toBe('node-b');
  });

  it('maps container, pod, namespace, device and modelName and keeps every label in labels_raw', () => {
    const r = mapSeries(gpuLabels([label('container', 'c'), label('pod', 'p'), label('namespace', 'n'), label('device', 'nvidia0'), label('modelName', 'H100'), label('job', 'dcgm')]));
    expect(r).toMatchObject({ ok: true, fields: { container: 'c', pod: 'p', namespace: 'n', device: 'nvidia0', modelName: 'H100', gpu_id: '0', uuid: 'GPU-x', metric_name: 'DCGM_FI_DEV_GPU_TEMP' } });
    expect(r.ok && r.fields.labels_raw).toBe('UUID="GPU-x",__name__="DCGM_FI_DEV_GPU_TEMP",container="c",device="nvidia0",gpu="0",job="dcgm",modelName="H100",namespace="n",pod="p"');
  });

  it('sorts labels a client sent unsorted and escapes quotes, backslashes and newlines as the exposition format does', () => {
    expect(labelsRaw([label('b', 'say "hi"\\\n'), label('a', '1')])).toBe('a="1",b="say \\"hi\\"\\\\\\n"');
  });

  it('drops a series without UUID as not GPU telemetry', () => {
    expect(mapSeries([label('__name__', 'up'), label('job', 'x')])).toMatchObject({ ok: false, reason: 'no_uuid' });
  });

  it('rejects series the row rules reject, naming the field, never echoing the value', () => {
    const nul = mapSeries(gpuLabels([label('Hostname', 'a\0b')]));
    expect(nul).toMatchObject({ ok: false, reason: 'invalid' });
    expect(!nul.ok && nul.problem).toMatch(/Hostname contains a NUL/);
    const long = mapSeries([label('UUID', 'G'.repeat(200)), label('__name__', 'm')]);
    expect(!long.ok && long.problem).toMatch(/^uuid longer than 128/);
    expect(mapSeries([label('UUID', 'GPU-x')])).toMatchObject({ ok: false, reason: 'invalid' }); // no metric name
    expect(mapSeries(gpuLabels([label('a b', 'x')]))).toMatchObject({ ok: false, reason: 'invalid' });
    expect(mapSeries([...gpuLabels(), label('gpu', '1')])).toMatchObject({ ok: false, reason: 'invalid' });
    const ctl = mapSeries(gpuLabels([label('device', 'nv\x01')]));
    expect(!ctl.ok && ctl.problem).toMatch(/device contains control characters/);
  });
});

describe('the series cache', () => {
  it('gives what mapSeries gives, for valid and dropped series, and stays within its bound', () => {
    const cache = new SeriesCache(100);
    const samples = [...rows.slice(0, 300).map(rowLabels), [label('__name__', 'up')], gpuLabels([label('pod', 'a\0')])];
    for (let round = 0; round < 2; round++) for (const labels of samples) expect(cache.map(labels)).toEqual(mapSeries(labels));
    expect(cache.size).toBeGreaterThan(0);
    expect(cache.size).toBeLessThanOrEqual(100);
  });

  it('rejects a hostile series with 200,000 labels (duplicated names found in linear time)', () => {
    const many = Array.from({ length: 200_000 }, (_, i) => label(`l${i % 199_999}`, 'x'));
    expect(new SeriesCache(10).map(many)).toMatchObject({ ok: false, reason: 'invalid', problem: expect.stringMatching(/appears twice/) });
    const distinct = Array.from({ length: 200_000 }, (_, i) => label(`l${i}`, 'x'));
    const cache = new SeriesCache(10);
    expect(cache.map([...distinct, label('UUID', 'GPU-1'), label('__name__', 'm')])).toMatchObject({ ok: false, reason: 'invalid', problem: expect.stringMatching(/labels_raw longer/) });
    expect(cache.size).toBe(0); // too large to be worth remembering
  });
});

describe('staleness markers', () => {
  it("recognises Prometheus's stale NaN, also after a protobuf round trip, and nothing else", () => {
    expect(isStaleMarker(STALE_NAN)).toBe(true);
    const decoded = decodeWriteRequest(body([{ labels: gpuLabels(), samples: [{ value: STALE_NAN, timestamp: 1 }] }]));
    expect(isStaleMarker(decoded.timeseries[0].samples[0].value)).toBe(true);
    for (const v of [NaN, Infinity, -Infinity, 0, 1.5, -0]) expect(isStaleMarker(v)).toBe(false);
  });
});

describe('a request → batches', () => {
  const opts = { sourceId: 'rw-abc', receivedAt: Date.UTC(2025, 6, 19), batchRows: 1000 };

  it('encodes the sample exactly as ingest encodes the CSV rows, in batches with deterministic ids', () => {
    const req = body(rowSeries(rows));
    const out = requestBatches(req, opts);
    expect(out).toMatchObject({ received: 2470, accepted: 2470, firstProblem: undefined });
    expect(DROP_REASONS.every((r) => out.dropped[r] === 0)).toBe(true);
    expect(out.batches.map((b) => [b.id, b.rows, b.sourceId])).toEqual([
      ['rw-abc.0.0', 1000, 'rw-abc'],
      ['rw-abc.0.1', 1000, 'rw-abc'],
      ['rw-abc.0.2', 470, 'rw-abc'],
    ]);
    for (const b of out.batches) expect(b.id).toMatch(BATCH_ID); // what collect accepts
    // The same rows through ingest's row schema and the shared encoder, line = index in the request.
    const decoded = out.batches.map((b) => decodeSampleBatch(b.body));
    rows.forEach((r, i) => {
      const seq = Math.floor(i / 1000);
      const enc = new SampleBatchEncoder('rw-abc', `rw-abc.0.${seq}`, opts.receivedAt);
      const sample = dcgmRow.parse(r);
      enc.add(sample, sample.timestamp, i);
      expect(decoded[seq][i % 1000]).toEqual(decodeSampleBatch(enc.finish())[0]);
    });
    // Same bytes in, same batches out: a retried request publishes identical messages.
    expect(requestBatches(req, opts).batches.map((b) => Buffer.from(b.body).toString('base64'))).toEqual(out.batches.map((b) => Buffer.from(b.body).toString('base64')));
  });

  it('drops and counts staleness markers, NaN/Inf, series without UUID, out-of-range times and histograms; lines stay request indexes', () => {
    const req = body([
      { labels: gpuLabels(), samples: [{ value: 1, timestamp: 1_700_000_000_000 }, { value: STALE_NAN, timestamp: 1_700_000_001_000 }, { value: NaN, timestamp: 1_700_000_002_000 }] },
      { labels: [label('__name__', 'up'), label('job', 'node')], samples: [{ value: 1, timestamp: 1_700_000_000_000 }, { value: 1, timestamp: 1_700_000_001_000 }] },
      { labels: gpuLabels([label('device', 'nvidia0')]), samples: [{ value: Infinity, timestamp: 1 }, { value: -Infinity, timestamp: 2 }, { value: 3, timestamp: Date.UTC(2300, 0, 1) }, { value: 4, timestamp: 1_700_000_003_000 }] },
      { labels: gpuLabels([label('bad name', 'x')]), samples: [{ value: 1, timestamp: 1 }] },
      { labels: gpuLabels(), samples: [], histograms: [new Uint8Array([8, 1]), new Uint8Array([8, 2])] },
    ]);
    const out = requestBatches(req, opts);
    expect(out.received).toBe(12);
    expect(out.accepted).toBe(2);
    expect(out.dropped).toEqual({ no_uuid: 2, stale: 1, non_finite: 3, invalid: 2, histogram: 2 });
    expect(out.firstProblem).toMatch(/timestamp is outside the range/);
    const stored = decodeSampleBatch(out.batches[0].body);
    expect(stored.map((r) => [new Date(r.timestamp).toISOString(), r.value, r.line])).toEqual([
      ['2023-11-14T22:13:20.000Z', 1, 0],
      ['2023-11-14T22:13:23.000Z', 4, 8],
    ]);
  });

  it('throws on bytes that are not a WriteRequest (and on zero padding, which a truncated snappy stream leaves)', () => {
    expect(() => requestBatches(Buffer.from('definitely not protobuf'), opts)).toThrow();
    const good = Buffer.from(body(rowSeries(rows.slice(0, 3))));
    expect(() => requestBatches(good.subarray(0, good.length - 4), opts)).toThrow();
    expect(() => requestBatches(Buffer.concat([good, Buffer.alloc(16)]), opts)).toThrow(/field number 0/);
  });

  it('accepts an empty WriteRequest and one holding only metadata (Prometheus sends those)', () => {
    expect(requestBatches(new Uint8Array(0), opts)).toMatchObject({ batches: [], received: 0 });
    // field 3 (metadata), length-delimited: skipped
    const metadataOnly = Buffer.from([0x1a, 0x04, 0x08, 0x01, 0x12, 0x00]);
    expect(requestBatches(metadataOnly, opts)).toMatchObject({ batches: [], received: 0 });
  });
});
