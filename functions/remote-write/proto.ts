import protobuf from 'protobufjs';

// The Prometheus remote-write 1.0 messages (prometheus/prometheus prompb/remote.proto and
// types.proto), decoded and encoded by protobufjs. Only the fields we read are declared; protobufjs
// skips the others (metadata, exemplars). Native histograms are declared as opaque bytes: we only
// count them (they are dropped), and bytes has the same wire form as the embedded message.
const PROTO = `
syntax = "proto3";
package prometheus;
message WriteRequest { repeated TimeSeries timeseries = 1; }
message TimeSeries {
  repeated Label labels = 1;
  repeated Sample samples = 2;
  repeated bytes histograms = 4;
}
message Label { string name = 1; string value = 2; }
message Sample { double value = 1; int64 timestamp = 2; }
`;

// int64 timestamps as plain numbers instead of long.js objects: epoch milliseconds are exact
// below 2^53 (far beyond the store's year 2299), and no object is allocated per sample. This is
// process-wide protobufjs configuration; remote write is its only user.
protobuf.util.Long = null as unknown as typeof protobuf.util.Long;
protobuf.configure();

const root = protobuf.parse(PROTO, { keepCase: true }).root;
const writeRequestType = root.lookupType('prometheus.WriteRequest');
const timeSeriesType = root.lookupType('prometheus.TimeSeries');
/** WriteRequest.timeseries: field 1, length-delimited. */
const TIMESERIES_TAG = (1 << 3) | 2;

export interface Label {
  name: string;
  value: string;
}
export interface PromSample {
  value: number;
  /** Epoch milliseconds. */
  timestamp: number;
}
export interface TimeSeries {
  labels: Label[];
  samples: PromSample[];
  histograms?: Uint8Array[];
}
export interface WriteRequest {
  timeseries: TimeSeries[];
}

/**
 * Calls `each` for every TimeSeries of a WriteRequest, one decoded at a time. Decoding the whole
 * request at once would hold an object per sample: a 2-byte empty Sample becomes a ~50-byte
 * object, so a small body could cost hundreds of MB. Walking the top-level field with
 * protobufjs's Reader keeps one series in memory; other fields (metadata) are skipped. Throws on
 * malformed input (protobufjs's message names an offset, never the bytes).
 */
export function forEachTimeSeries(bytes: Uint8Array, each: (ts: TimeSeries) => void): void {
  const reader = protobuf.Reader.create(bytes);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag === TIMESERIES_TAG) each(timeSeriesType.decode(reader, reader.uint32()) as unknown as TimeSeries);
    else if (tag >>> 3 === 0) throw new Error(`illegal tag: field number 0 at offset ${reader.pos}`);
    else reader.skipType(tag & 7);
  }
}

/** Protobuf bytes → WriteRequest, whole (clients and tests; the function uses forEachTimeSeries). */
export function decodeWriteRequest(bytes: Uint8Array): WriteRequest {
  return writeRequestType.decode(bytes) as unknown as WriteRequest;
}

export function encodeWriteRequest(req: WriteRequest): Uint8Array {
  return writeRequestType.encode(req as unknown as protobuf.Message).finish();
}
