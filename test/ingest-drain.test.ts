import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type JetStreamManager, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUCKETS, CONSUMERS, STREAMS } from '../shared/names.ts';
import { objectStream } from '../shared/object-store.ts';
import { generateCsv } from './bench/generate.ts';
import { repoRoot, startStack, startWorker, type FunctionProcess, type Stack } from './local/stack.ts';
import { waitFor } from './support/ports.ts';

// A real ingest worker process and SIGTERM: idle it exits at once; in the middle of a part it
// finishes the part, acks it and then exits; a part whose stored chunks are gone (expired) fails
// and is acked instead of holding the worker (and its drain) forever.

const FIXTURE = join(repoRoot, 'test', 'fixtures', 'dcgm_metrics_20250718_134233.csv');

let stack: Stack;
let nc: NatsConnection;
let jsm: JetStreamManager;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ingest-drain-'));
  // No workers: each test starts its own ingest process. One part per upload (64 MiB parts).
  stack = await startStack({ ingestWorkers: 0, collectWorkers: 0, httpFunctions: ['upload'], env: { UPLOAD_PART_BYTES: String(64 * 1024 * 1024) } });
  nc = await connect({ servers: stack.nats.url });
  jsm = await nc.jetstreamManager();
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

const startIngest = () => startWorker(stack, 'ingest');

/** SIGTERM; resolves to the exit code and how long the process took to exit. */
async function sigterm(w: FunctionProcess): Promise<{ code: number | null; signal: string | null; ms: number }> {
  const t0 = Date.now();
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => w.process.once('exit', (code, signal) => r({ code, signal })));
  w.process.kill('SIGTERM');
  const timeout = setTimeout(() => w.process.kill('SIGKILL'), 30_000);
  const r = await exited;
  clearTimeout(timeout);
  stack.processes.splice(stack.processes.indexOf(w), 1);
  return { ...r, ms: Date.now() - t0 };
}

async function upload(body: Buffer): Promise<string> {
  const res = await fetch(`${stack.uploadUrl}/api/v1/uploads`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body: new Uint8Array(body) });
  const answer = (await res.json()) as { id: string; parts: number };
  expect(res.status).toBe(202);
  expect(answer.parts).toBe(1);
  return answer.id;
}

const status = async (id: string) => (await (await fetch(`${stack.uploadUrl}/api/v1/uploads/${id}`)).json()) as Record<string, any>;
const ingestConsumer = () => jsm.consumers.info(STREAMS.uploads, CONSUMERS.ingest);

describe('ingest worker drain on SIGTERM', () => {
  it('exits promptly when idle', async () => {
    const w = await startIngest();
    const r = await sigterm(w);
    expect(r).toMatchObject({ code: 0, signal: null });
    expect(r.ms).toBeLessThan(5000);
  }, 60_000);

  it('finishes and acks the part in hand before exiting', async () => {
    const file = join(dir, 'big.csv');
    const { rows } = await generateCsv(FIXTURE, file, 60_000);
    const id = await upload(readFileSync(file));
    const w = await startIngest();
    // SIGTERM as soon as the worker holds the part (delivered, not yet acked or reported).
    await waitFor(async () => (await ingestConsumer()).num_ack_pending === 1, 'part delivered', 20_000, 20);
    expect((await status(id)).rows_accepted).toBe(0);
    const r = await sigterm(w);
    expect(r, w.output.join('\n')).toMatchObject({ code: 0, signal: null });

    const c = await ingestConsumer();
    expect({ pending: c.num_pending, ackPending: c.num_ack_pending, redelivered: c.num_redelivered }).toEqual({ pending: 0, ackPending: 0, redelivered: 0 });
    const s = await status(id);
    expect(s.rows_accepted).toBe(rows);
    expect(s.rows_rejected).toBe(0);
    // Every batch of the part is in the telemetry stream (collect is not running here).
    const t = await jsm.streams.info(STREAMS.telemetry);
    expect(t.state.messages).toBe(Math.ceil(rows / 5000));
  }, 90_000);

  it('fails (and acks) a part whose stored chunks expired instead of waiting for them forever', async () => {
    const id = await upload(readFileSync(FIXTURE));
    // What an expired object looks like: the meta is still there, the chunks are gone.
    await jsm.streams.purge(objectStream(BUCKETS.objects), { filter: `$O.${BUCKETS.objects}.C.>` });
    const w = await startIngest();
    await waitFor(async () => (await status(id)).state === 'failed', 'upload failed', 20_000, 100);
    expect((await status(id)).error).toMatch(/0 of \d+ chunks stored/);
    // The failed state is saved before the part is acked: wait for the ack to reach the server.
    await waitFor(async () => {
      const c = await ingestConsumer();
      return c.num_pending === 0 && c.num_ack_pending === 0;
    }, 'part acked', 10_000, 50);
    const r = await sigterm(w);
    expect(r).toMatchObject({ code: 0, signal: null });
    expect(r.ms).toBeLessThan(5000);
    expect(w.output.join('\n')).not.toMatch(/Unhandled|uncaught|Emitted 'error'/i);
  }, 60_000);
});
