// npm run bench:remote-write [-- --samples N --copies N --per-request N --concurrency N]
// (run it as `flock /tmp/gputel-bench.lock npm run bench:remote-write`)
// Remote-write throughput per CPU core of the function process, against two baselines measured
// in the same run on the same samples:
//  (a) decode only: snappy + protobuf decoding of the very requests, in this process, the way
//      the function decodes (one TimeSeries at a time) — the floor of the function's work;
//  (b) remote write: the requests POSTed (N at a time, like Prometheus shards) to the
//      remote-write function (esbuild bundle) until JetStream holds every batch;
//  (c) the CSV path: the same samples as a DCGM CSV through upload → ingest until ingest has
//      published every row to the same stream.
// Then the function's peak memory with 8 requests (Knative's containerConcurrency) of nearly the
// largest accepted size (~7.4 MB decoded) in flight at once.
// Samples: the bundled sample's 2,470 series, `--copies` times with distinct GPU uuids, scraped
// in rounds 15 s apart; one TimeSeries per sample, `--per-request` samples per request, as
// Prometheus sends them. Collect is not running: the numbers are the producers' alone.
import { createWriteStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect } from 'nats';
import snappy from 'snappyjs';
import { encodeRemoteWrite, sendRemoteWrite } from '../../functions/remote-write/client.ts';
import { forEachTimeSeries, type TimeSeries } from '../../functions/remote-write/proto.ts';
import { uploadFile } from '../../functions/upload/cli.ts';
import { STREAMS } from '../../shared/names.ts';
import { DCGM_COLUMNS } from '../../shared/schemas.ts';
import { repoRoot, startStack } from '../local/stack.ts';
import { rowSeries } from '../support/dcgm-series.ts';
import { fixtureRows, type FixtureRow } from '../support/fixtures.ts';
import { waitFor } from '../support/ports.ts';
import { cpuSeconds, peakRssMiB } from './proc.ts';

const { values } = parseArgs({
  options: {
    samples: { type: 'string', default: '500000' },
    copies: { type: 'string', default: '4' },
    'per-request': { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '4' },
    verbose: { type: 'boolean', default: false },
  },
});
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

/** The sample's rows with GPU uuids made distinct per copy (as test/bench/generate.ts does). */
function seriesRows(copies: number): FixtureRow[] {
  const base = fixtureRows();
  const out: FixtureRow[] = [];
  for (let k = 0; k < copies; k++) {
    const tag = k.toString(16).padStart(8, '0');
    const retag = (s: string) => s.replace(/GPU-[0-9a-f]{8}-/g, `GPU-${tag}-`);
    for (const r of base) out.push({ ...r, uuid: retag(r.uuid), labels_raw: retag(r.labels_raw) });
  }
  return out;
}

const csvField = (s: string) => `"${s.replace(/"/g, '""')}"`;

async function main() {
  const perRequest = Number(values['per-request']);
  const concurrency = Number(values.concurrency);
  const series = seriesRows(Number(values.copies));
  const rounds = Math.ceil(Number(values.samples) / series.length);
  const samples = rounds * series.length;
  const t0 = Date.UTC(2026, 0, 1);
  const at = (round: number) => t0 + round * 15_000;
  if (!existsSync(join(repoRoot, 'dist', 'remote-write.js'))) throw new Error('run `npm run build` first (the benchmark runs the esbuild bundles)');

  // Requests exactly as Prometheus would cut them: consecutive samples, per-request at a time.
  const requests: { body: Buffer; samples: number }[] = [];
  let pending: TimeSeries[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const ts of rowSeries(series, () => at(r))) {
      pending.push(ts);
      if (pending.length === perRequest) {
        requests.push({ body: encodeRemoteWrite(pending), samples: pending.length });
        pending = [];
      }
    }
  }
  if (pending.length) requests.push({ body: encodeRemoteWrite(pending), samples: pending.length });
  const wireBytes = requests.reduce((n, q) => n + q.body.length, 0);

  const work = mkdtempSync(join(tmpdir(), 'gputel-bench-rw-'));
  const csv = join(work, 'same-samples.csv');
  const out = createWriteStream(csv);
  out.write(DCGM_COLUMNS.join(',') + '\n');
  for (let r = 0; r < rounds; r++) {
    const time = new Date(at(r)).toISOString();
    const chunk = series.map((s) => [time, s.metric_name, s.gpu_id, s.device, s.uuid, s.modelName, s.Hostname, s.container, s.pod, s.namespace, s.value, s.labels_raw].map(csvField).join(',')).join('\n') + '\n';
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  console.log(`${fmt(samples)} samples: ${fmt(series.length)} series × ${rounds} rounds; ${requests.length} requests of ≤ ${perRequest} samples, ${(wireBytes / 1024 ** 2).toFixed(1)} MiB on the wire`);

  // (a) decode only, in this process.
  const a0 = process.cpuUsage();
  let decoded = 0;
  for (const q of requests) forEachTimeSeries(snappy.uncompress(q.body), () => decoded++);
  const aCpu = (() => {
    const u = process.cpuUsage(a0);
    return (u.user + u.system) / 1e6;
  })();
  if (decoded !== samples) throw new Error(`decoded ${decoded} series, expected ${samples}`);

  const stack = await startStack({
    dataDir: join(work, 'data'),
    useBundles: true,
    httpFunctions: ['upload', 'remote-write'],
    ingestWorkers: 1,
    collectWorkers: 0,
    verbose: values.verbose,
  });
  const nc = await connect({ servers: stack.nats.url });
  const jsm = await nc.jetstreamManager();
  const streamMessages = async () => (await jsm.streams.info(STREAMS.telemetry)).state.messages;
  try {
    const rw = stack.processes.find((p) => p.name.startsWith('remote-write'))!.process.pid;
    const ingest = stack.processes.find((p) => p.name.startsWith('ingest'))!.process.pid;
    const upload = stack.processes.find((p) => p.name.startsWith('upload'))!.process.pid;
    const natsPid = stack.nats.process.pid;
    // Warm-up (JIT, connections): one request of other timestamps, before the counters start.
    await sendRemoteWrite(`${stack.remoteWriteUrl}/api/v1/write`, rowSeries(series.slice(0, 100), () => at(rounds + 1)));
    const before = await streamMessages();

    // (b) remote write.
    const b = { cpu: cpuSeconds(rw), nats: cpuSeconds(natsPid), t: Date.now() };
    let next = 0;
    const url = `${stack.remoteWriteUrl}/api/v1/write`;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < requests.length) {
          const q = requests[next++];
          const res = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy', 'x-prometheus-remote-write-version': '0.1.0' },
            body: new Uint8Array(q.body),
          });
          if (res.status !== 204) throw new Error(`remote write answered ${res.status}: ${await res.text()}`);
        }
      }),
    );
    const bWall = (Date.now() - b.t) / 1000;
    const bCpu = cpuSeconds(rw) - b.cpu;
    const bNats = cpuSeconds(natsPid) - b.nats;
    const published = (await streamMessages()) - before;
    if (published !== requests.length) throw new Error(`stream holds ${published} new batches, expected ${requests.length}`);

    const rssTypical = peakRssMiB(rw);

    // Peak memory: 8 concurrent requests just under REMOTE_WRITE_MAX_DECODED_BYTES (8 MiB).
    const bigRows = Math.floor(series.length * 2.5); // 24,700 samples ≈ 7.4 MB decoded
    const big = Array.from({ length: 8 }, (_, k) => {
      const ts: TimeSeries[] = [];
      for (let r = 0; r < 3; r++) ts.push(...rowSeries(series, () => at(rounds + 10 + k * 5 + r)));
      return encodeRemoteWrite(ts.slice(0, bigRows));
    });
    const bigStatus = await Promise.all(big.map((body) => fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy', 'x-prometheus-remote-write-version': '0.1.0' },
      body: new Uint8Array(body),
    }).then((r) => r.status, (e: Error) => String(e.cause ?? e))));
    const rssBig = peakRssMiB(rw);

    // (c) the CSV path: upload + ingest of the same samples, until ingest published every row.
    const c = { ingest: cpuSeconds(ingest), upload: cpuSeconds(upload), nats: cpuSeconds(natsPid), t: Date.now() };
    const { id } = await uploadFile(csv, { url: stack.uploadUrl, out: process.stderr });
    let status: any;
    await waitFor(async () => {
      status = await (await fetch(`${stack.uploadUrl}/api/v1/uploads/${id}`)).json();
      if (status.state === 'failed') throw new Error(`upload failed: ${status.error}`);
      return status.parts !== undefined && status.parts_ingested === status.parts;
    }, 'ingest to publish every row', 600_000, 200);
    const cWall = (Date.now() - c.t) / 1000;
    if (status.rows_accepted !== samples) throw new Error(`ingest accepted ${status.rows_accepted} rows, expected ${samples}`);
    const cIngest = cpuSeconds(ingest) - c.ingest;
    const cCpu = cIngest + (cpuSeconds(upload) - c.upload);

    const perCore = samples / bCpu;
    console.log(`\n(a) decode only (snappyjs + protobufjs)   : ${aCpu.toFixed(2)} s CPU   ${fmt(samples / aCpu)} samples per CPU-second`);
    console.log(`(b) remote write → JetStream              : ${bCpu.toFixed(2)} s CPU   ${fmt(perCore)} samples per CPU-second of the function   (${fmt(samples / bWall)} samples/s wall, ${concurrency} concurrent requests; nats-server ${bNats.toFixed(1)} s CPU)`);
    console.log(`(c) CSV upload + ingest → JetStream       : ${cCpu.toFixed(2)} s CPU   ${fmt(samples / cCpu)} rows per CPU-second of upload + ingest   (ingest alone ${fmt(samples / cIngest)}; ${fmt(samples / cWall)} rows/s wall)`);
    console.log(`ratios: (b)/(a) ${(perCore / (samples / aCpu)).toFixed(2)}   (b)/(c) ${(perCore / (samples / cCpu)).toFixed(2)}`);
    console.log(`remote-write: ${((bCpu / samples) * 1e6).toFixed(1)} µs CPU per sample; peak RSS ${rssTypical.toFixed(0)} MiB during (b), ${rssBig.toFixed(0)} MiB after 8 concurrent requests of ${fmt(bigRows)} samples (${(big[0].length / 1024 ** 2).toFixed(1)} MiB sent each; answers ${bigStatus.join(' ')})`);
  } finally {
    await nc.close();
    await stack.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
