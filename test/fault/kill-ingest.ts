// Measures how long a part held by a killed ingest worker takes to be finished by another one:
// kill -9 of the worker mid-part → the server redelivers after ack_wait → the second worker parses
// the part again → its result is saved. Prints the numbers; not a test (timing on a shared machine
// is noisy), run it as
//   flock /tmp/gputel-bench.lock npx tsx test/fault/kill-ingest.ts [--rows N] [--runs N]
// Extra environment (e.g. CONSUMER_ACK_WAIT_MS=60000 WORKER_HEARTBEAT_MS=15000 for the old
// settings) is passed to provisioning and the workers.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect } from 'nats';
import { BUCKETS, CONSUMERS, STREAMS } from '../../shared/names.ts';
import { generateCsv } from '../bench/generate.ts';
import { repoRoot, startStack, startWorker, type Stack } from '../local/stack.ts';
import { waitFor } from '../support/ports.ts';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '300000' }, runs: { type: 'string', default: '3' } } });
const FIXTURE = join(repoRoot, 'test', 'fixtures', 'dcgm_metrics_20250718_134233.csv');
const passEnv = Object.fromEntries(
  ['CONSUMER_ACK_WAIT_MS', 'WORKER_HEARTBEAT_MS'].filter((k) => process.env[k]).map((k) => [k, process.env[k]!]),
);

const dir = mkdtempSync(join(tmpdir(), 'kill-ingest-'));
const file = join(dir, 'one-part.csv');
const { rows, bytes } = await generateCsv(FIXTURE, file, Number(values.rows));
const body = readFileSync(file);
// One part per upload, so "the part" is the whole file; no collect: only ingest is measured.
const stack: Stack = await startStack({
  ingestWorkers: 0,
  collectWorkers: 0,
  httpFunctions: ['upload'],
  env: { ...passEnv, UPLOAD_PART_BYTES: String(512 * 1024 * 1024) },
});
const nc = await connect({ servers: stack.nats.url });
const jsm = await nc.jetstreamManager();
const kv = await nc.jetstream().views.kv(BUCKETS.status);
const ackWaitMs = (await jsm.consumers.info(STREAMS.uploads, CONSUMERS.ingest)).config.ack_wait! / 1e6;

const startIngest = () => startWorker(stack, 'ingest', passEnv);

const partDone = async (id: string) => {
  const e = await kv.get(`${id}.part.0`);
  return e !== null && e.length > 0 && JSON.parse(e.string()).state === 'done';
};

const results: { redeliveredS: number; doneS: number }[] = [];
try {
  console.log(`part: ${rows.toLocaleString()} rows, ${(bytes / 1024 ** 2).toFixed(0)} MiB; consumer ack_wait ${ackWaitMs / 1000} s`);
  for (let run = 1; run <= Number(values.runs); run++) {
    const a = await startIngest();
    const res = await fetch(`${stack.uploadUrl}/api/v1/uploads`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body: new Uint8Array(body) });
    const { id, parts } = (await res.json()) as { id: string; parts: number };
    if (parts !== 1) throw new Error(`expected one part, got ${parts}`);
    await waitFor(async () => (await jsm.consumers.info(STREAMS.uploads, CONSUMERS.ingest)).num_ack_pending === 1, 'A holds the part', 30_000, 20);
    const b = await startIngest();
    const before = await jsm.consumers.info(STREAMS.uploads, CONSUMERS.ingest);
    if (await partDone(id)) throw new Error('worker A finished the part before the kill: use more --rows');
    const t0 = Date.now();
    a.process.kill('SIGKILL');
    let redeliveredAt = 0;
    await waitFor(async () => {
      if (!redeliveredAt && (await jsm.consumers.info(STREAMS.uploads, CONSUMERS.ingest)).num_redelivered > before.num_redelivered) redeliveredAt = Date.now();
      return partDone(id);
    }, 'part done by worker B', 300_000, 100);
    const r = { redeliveredS: (redeliveredAt - t0) / 1000, doneS: (Date.now() - t0) / 1000 };
    results.push(r);
    console.log(`run ${run}: kill -9 → redelivered ${r.redeliveredS.toFixed(1)} s, → part done by the other worker ${r.doneS.toFixed(1)} s`);
    await stack.stopFunction(b);
    stack.processes.splice(stack.processes.indexOf(a), 1);
  }
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  console.log(
    `median over ${results.length} runs: redelivered ${med(results.map((r) => r.redeliveredS)).toFixed(1)} s, ` +
      `part done ${med(results.map((r) => r.doneS)).toFixed(1)} s (ack_wait ${ackWaitMs / 1000} s)`,
  );
} finally {
  await nc.close();
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
}
