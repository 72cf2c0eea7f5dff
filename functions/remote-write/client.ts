import snappy from 'snappyjs';
import { REMOTE_WRITE_VERSION } from './body.ts';
import { encodeWriteRequest, type TimeSeries } from './proto.ts';

// Client side of remote write 1.0 (the local CLI, tests and the benchmark): what Prometheus
// sends, a snappy-compressed WriteRequest with the spec's headers.

/** A WriteRequest as it travels: protobuf, then snappy block format. */
export function encodeRemoteWrite(timeseries: TimeSeries[]): Buffer {
  return Buffer.from(snappy.compress(Buffer.from(encodeWriteRequest({ timeseries }))));
}

export function remoteWriteHeaders(token?: string): Record<string, string> {
  return {
    'content-type': 'application/x-protobuf',
    'content-encoding': 'snappy',
    'x-prometheus-remote-write-version': REMOTE_WRITE_VERSION,
    'user-agent': 'gputel-cli',
    ...(token ? { authorization: `Bearer ${token}` } : {}),
  };
}

export interface RemoteWriteResult {
  status: number;
  /** Error body (JSON envelope) for a non-2xx answer. */
  body: string;
  retryAfter: string | null;
}

/** POSTs one request; `url` is the endpoint (…/api/v1/write). */
export async function sendRemoteWrite(url: string, timeseries: TimeSeries[], opts: { token?: string; timeoutMs?: number } = {}): Promise<RemoteWriteResult> {
  const res = await fetch(url, {
    method: 'POST',
    headers: remoteWriteHeaders(opts.token),
    body: new Uint8Array(encodeRemoteWrite(timeseries)),
    signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
  });
  return { status: res.status, body: await res.text(), retryAfter: res.headers.get('retry-after') };
}
