import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { connect } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORK_QUEUES } from '../shared/janitor.ts';
import { STREAMS } from '../shared/names.ts';
import { generateCsv } from './bench/generate.ts';
import { repoRoot, startStack, type Stack } from './local/stack.ts';
import { waitFor } from './support/ports.ts';
import { startNats } from './support/servers.ts';

// kill -9 of nats-server while the workers ingest and collect, then a restart on the same data:
// every row is stored exactly once, and the work queues end up empty — nothing that was already
// processed stays behind (the workers sweep below the ack floor after reconnecting and then
// every 30 s).

const FIXTURE = join(repoRoot, 'test', 'fixtures', 'dcgm_metrics_20250718_134233.csv');

let stack: Stack;
let ch: ClickHouseClient;
let dir: string;
let natsDir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nats-crash-'));
  stack = await startStack({
    ingestWorkers: 1,
    collectWorkers: 1,
    httpFunctions: ['upload'],
    env: { UPLOAD_PART_BYTES: String(1024 * 1024), INGEST_BATCH_ROWS: '500', WORKER_RETRY_BASE_MS: '200' },
  });
  natsDir = stack.nats.dataDir;
  ch = createClient({ url: stack.clickhouse.url, database: 'telemetry' });
}, 120_000);

afterAll(async () => {
  await ch?.close();
  await stack?.stop();
  for (const d of [dir, natsDir]) if (d) rmSync(d, { recursive: true, force: true });
}, 60_000);

const status = async (id: string) => (await (await fetch(`${stack.uploadUrl}/api/v1/uploads/${id}`)).json()) as Record<string, any>;

describe('nats-server killed mid-pipeline', () => {
  it('stores every row once and leaves no processed message in the work queues', async () => {
    const file = join(dir, 'upload.csv');
    const { rows } = await generateCsv(FIXTURE, file, 60_000);
    const res = await fetch(`${stack.uploadUrl}/api/v1/uploads`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body: new Uint8Array(readFileSync(file)) });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await waitFor(async () => (await status(id)).rows_stored > 0, 'first rows stored', 60_000, 50);

    const { port, monitorPort } = stack.nats;
    stack.nats.process.kill('SIGKILL');
    await new Promise((r) => stack.nats.process.once('exit', r));
    stack.nats = await startNats({ dataDir: natsDir, port, monitorPort });

    let last: Record<string, any> = {};
    await waitFor(async () => {
      last = await status(id);
      return last.state === 'done' || last.state === 'failed';
    }, 'upload done after the restart', 150_000, 250).catch(async (e) => {
      // What was left undone tells a lost write (KV, stream) from a stuck worker.
      const rs = await ch.query({ query: 'SELECT count() AS n, uniqExact(batch_id) AS b FROM samples WHERE upload_id = {id:String}', query_params: { id }, format: 'JSONEachRow' });
      const nc = await connect({ servers: stack.nats.url });
      const jsm = await nc.jetstreamManager();
      const queues = await Promise.all(WORK_QUEUES.map(async (q) => {
        const ci = await jsm.consumers.info(q.stream, q.consumer);
        return { consumer: q.consumer, delivered: ci.delivered.stream_seq, floor: ci.ack_floor.stream_seq, pending: ci.num_pending, ackPending: ci.num_ack_pending };
      }));
      await nc.close();
      const tail = stack.processes.flatMap((p) => p.output.slice(-15).map((l) => `${p.name}: ${l}`));
      throw new Error(`${(e as Error).message}: status ${JSON.stringify({ ...last, rejects: undefined })}; clickhouse ${JSON.stringify(await rs.json())}; queues ${JSON.stringify(queues)}\n${tail.join('\n')}`);
    });
    expect(last).toMatchObject({ state: 'done', rows_accepted: rows, rows_stored: rows, rows_rejected: 0 });
    const rs = await ch.query({ query: 'SELECT count() AS n, uniqExact(batch_id, line) AS u FROM samples WHERE upload_id = {id:String}', query_params: { id }, format: 'JSONEachRow' });
    const [{ n, u }] = (await rs.json()) as { n: string; u: string }[];
    expect({ n: Number(n), u: Number(u) }).toEqual({ n: rows, u: rows });

    const nc = await connect({ servers: stack.nats.url });
    try {
      const jsm = await nc.jetstreamManager();
      // Empty once the last acks land and the workers' janitors have swept (at once after the
      // reconnect, then every 30 s); a leftover below the ack floor would stay forever.
      const state = async () =>
        Promise.all(WORK_QUEUES.map(async (q) => {
          const [si, ci] = await Promise.all([jsm.streams.info(q.stream), jsm.consumers.info(q.stream, q.consumer)]);
          return { stream: q.stream, messages: si.state.messages, first: si.state.first_seq, last: si.state.last_seq, floor: ci.ack_floor.stream_seq, pending: ci.num_pending, ackPending: ci.num_ack_pending };
        }));
      await waitFor(async () => (await state()).every((q) => q.messages === 0), 'work queues empty', 90_000, 500).catch(async (e) => {
        const janitor = stack.processes.flatMap((p) => p.output.filter((l) => l.includes('janitor')));
        throw new Error(`${(e as Error).message}: ${JSON.stringify(await state())}\n${janitor.join('\n')}`);
      });
      expect((await jsm.streams.info(STREAMS.deadLetter)).state.messages).toBe(0);
    } finally {
      await nc.close();
    }
    expect(stack.processes.every((p) => p.process.exitCode === null)).toBe(true);
  }, 300_000);
});
