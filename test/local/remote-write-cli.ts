import { sendRemoteWrite, type RemoteWriteResult } from '../../functions/remote-write/client.ts';
import type { TimeSeries } from '../../functions/remote-write/proto.ts';
import { csvRows, rowSeries } from '../support/dcgm-series.ts';
import { fixtureRows } from '../support/fixtures.ts';

// `npm run cli -- remote-write`: a remote-write client for the demo, standing in for Prometheus.
// Without a file it sends the bundled sample's series as live samples (current time) every
// interval, like a scrape of dcgm-exporter; with a DCGM CSV it sends the file's rows with their
// own timestamps. Retries 5xx answers after Retry-After, as Prometheus does.

export interface RemoteWriteCliOptions {
  /** Endpoint, e.g. http://127.0.0.1:8083/api/v1/write. */
  url: string;
  token?: string;
  file?: string;
  intervalMs: number;
  /** Rounds of live samples; 0 = until stopped. Ignored with a file. */
  count: number;
  /** Samples per request (Prometheus's max_samples_per_send). */
  batch: number;
  out?: (line: string) => void;
  stopped?: () => boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function sendWithRetry(url: string, series: TimeSeries[], token: string | undefined, out: (l: string) => void): Promise<RemoteWriteResult> {
  for (let attempt = 1; ; attempt++) {
    const res = await sendRemoteWrite(url, series, { token }).catch((e: Error) => ({ status: 0, body: e.message, retryAfter: null }));
    if (res.status < 500 && res.status !== 0) return res;
    if (attempt === 5) return res;
    const waitS = Math.min(Number(res.retryAfter ?? 1) || 1, 10);
    out(`  ${res.status || 'no answer'}: retrying in ${waitS} s (${res.body.slice(0, 200)})`);
    await sleep(waitS * 1000);
  }
}

/** Sends the requests; resolves with the number of samples the endpoint accepted (2xx). */
export async function remoteWriteCli(opts: RemoteWriteCliOptions): Promise<number> {
  const out = opts.out ?? ((l: string) => console.log(l));
  let sent = 0;
  const send = async (series: TimeSeries[], what: string) => {
    for (let i = 0; i < series.length; i += opts.batch) {
      const chunk = series.slice(i, i + opts.batch);
      const res = await sendWithRetry(opts.url, chunk, opts.token, out);
      if (res.status < 200 || res.status > 299) throw new Error(`${opts.url} answered ${res.status || 'nothing'}: ${res.body.slice(0, 500)}`);
      sent += chunk.length;
    }
    out(`${what}: ${series.length.toLocaleString()} samples → ${opts.url} (accepted)`);
  };
  if (opts.file) {
    await send(rowSeries(csvRows(opts.file)), opts.file);
    return sent;
  }
  const rows = fixtureRows();
  for (let round = 1; opts.count === 0 || round <= opts.count; round++) {
    if (opts.stopped?.()) break;
    const now = Date.now();
    await send(rowSeries(rows, () => now), `round ${round} at ${new Date(now).toISOString()}`);
    if (opts.count !== 0 && round >= opts.count) break;
    for (let waited = 0; waited < opts.intervalMs && !opts.stopped?.(); waited += 200) await sleep(200);
  }
  return sent;
}
