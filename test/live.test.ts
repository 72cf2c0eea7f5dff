import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './local/stack.ts';
import { fixtureRows, FIXTURE_CSV } from './support/fixtures.ts';
import { waitFor } from './support/ports.ts';
import { HEADER } from './support/csv.ts';
import { openSse, type SseClient } from './support/sse.ts';

// Live samples end to end: SSE clients of the query function, a real upload through upload →
// ingest → collect, and collect's announcement on NATS relayed by query. A client receives
// exactly the uploaded samples of its GPU (or metric), resumes with Last-Event-ID, and the
// per-process bounds hold.

const GPU = 'GPU-016f5163-a200-f674-2110-97949df1c49a';
const UTIL = 'DCGM_FI_DEV_GPU_UTIL';
let stack: Stack;

async function upload(body: string): Promise<void> {
  const res = await fetch(`${stack.uploadUrl}/api/v1/uploads`, { method: 'POST', body, headers: { 'content-type': 'text/csv' } });
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  await waitFor(async () => {
    const s = (await (await fetch(`${stack.uploadUrl}/api/v1/uploads/${id}`)).json()) as { state: string };
    if (s.state === 'failed') throw new Error('upload failed');
    return s.state === 'done';
  }, 'upload done', 45_000, 100);
}

const samplesOf = (c: SseClient) =>
  c.events.filter((e) => e.event === 'samples').flatMap((e) => (JSON.parse(e.data) as { samples: { uuid: string; metric_name: string; timestamp: string; value: number }[] }).samples);

const row = (ts: string, metric: string, value: number) =>
  `"${ts}","${metric}","0","nvidia1","${GPU}","NVIDIA H100 80GB HBM3","mtv5-dgx1-hgpu-020","","","","${value}",""`;

beforeAll(async () => {
  stack = await startStack({ env: { LIVE_HEARTBEAT_MS: '300', LIVE_MAX_CLIENTS: '4', COLLECT_MAX_WAIT_MS: '1000' } });
});
afterAll(async () => {
  await stack?.stop();
});

describe('live samples (SSE)', () => {
  let gpu: SseClient;
  let metric: SseClient;

  it('delivers exactly the uploaded samples of the watched GPU and metric', async () => {
    gpu = await openSse(`${stack.queryUrl}/api/v1/gpus/${GPU}/live`);
    metric = await openSse(`${stack.queryUrl}/api/v1/metrics/${UTIL}/live`);
    expect(gpu.status).toBe(200);
    expect(metric.status).toBe(200);
    await waitFor(async () => gpu.events.some((e) => e.event === 'hello'), 'hello', 5000, 20);

    await upload(readFileSync(FIXTURE_CSV, 'utf8'));
    const expected = fixtureRows().filter((r) => r.uuid === GPU);
    expect(expected).toHaveLength(10);
    await waitFor(async () => samplesOf(gpu).length >= expected.length && samplesOf(metric).length >= 247, 'live samples', 20_000, 50);
    // Nothing more arrives afterwards (one heartbeat interval and more).
    await new Promise((r) => setTimeout(r, 1000));

    const got = samplesOf(gpu).map((s) => `${s.metric_name} ${s.timestamp} ${s.value}`).sort();
    const want = expected.map((r) => `${r.metric_name} ${new Date(r.timestamp).toISOString()} ${Number(r.value)}`).sort();
    expect(got).toEqual(want);
    const util = samplesOf(metric);
    expect(util).toHaveLength(fixtureRows().filter((r) => r.metric_name === UTIL).length);
    expect(new Set(util.map((s) => s.metric_name))).toEqual(new Set([UTIL]));
    expect(new Set(util.map((s) => s.uuid)).size).toBe(247);
    // Heartbeats keep the stream alive.
    expect(gpu.comments.some((c) => c.startsWith('heartbeat'))).toBe(true);
  });

  it('resumes from Last-Event-ID with what was missed, and says so when it cannot', async () => {
    const lastId = gpu.events.filter((e) => e.id).at(-1)!.id!;
    gpu.close();
    metric.close();
    await gpu.ended;
    // Stored while the client is away.
    await upload([HEADER, row('2025-07-19T00:00:00Z', UTIL, 77), row('2025-07-19T00:00:01Z', UTIL, 78)].join('\n') + '\n');
    const again = await openSse(`${stack.queryUrl}/api/v1/gpus/${GPU}/live`, { 'last-event-id': lastId });
    await waitFor(async () => samplesOf(again).length >= 2, 'resumed samples', 10_000, 50);
    expect(samplesOf(again).map((s) => s.value)).toEqual([77, 78]);
    again.close();

    const stale = await openSse(`${stack.queryUrl}/api/v1/gpus/${GPU}/live`, { 'last-event-id': '00000000-1' });
    await waitFor(async () => stale.events.some((e) => e.event === 'reset'), 'reset event', 5000, 20);
    stale.close();
  });

  it('validates parameters and bounds connections per process', async () => {
    const bad = await fetch(`${stack.queryUrl}/api/v1/gpus/${GPU}/live?metric=not%20a%20metric`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/^metric /);
    const unknown = await fetch(`${stack.queryUrl}/api/v1/gpus/${GPU}/live?bogus=1`);
    expect(unknown.status).toBe(400);

    const open = await Promise.all([1, 2, 3, 4].map(() => openSse(`${stack.queryUrl}/api/v1/metrics/${UTIL}/live`)));
    expect(open.map((c) => c.status)).toEqual([200, 200, 200, 200]);
    const refused = await fetch(`${stack.queryUrl}/api/v1/metrics/${UTIL}/live`);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('10');
    await refused.body?.cancel();
    for (const c of open) c.close();
  });
});
