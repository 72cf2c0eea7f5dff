// npm run bench:console (runs under `flock /tmp/gputel-bench.lock`): the console in Debian's
// Chromium.
// 1. Fleet page load with 10,000 GPUs: 10,000 GPUs × 10 metrics × 6 samples (1,250 hosts) built
//    straight in ClickHouse (INSERT … SELECT from numbers(), rollups recomputed by collect's
//    code), then the time from navigation until the first GPU page (100 rows with flags)
//    and the fleet total (hosts) are on screen; median of 5 cold loads.
// 2. Chart render time for 100,000 points: the console's own Chart component (uPlot) with 100k
//    points, time to the first painted frame and to repaint after new data; median of 5.
import { build } from 'esbuild';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@clickhouse/client';
import { recomputeRollups } from '../../shared/rollups.ts';
import { CLICKHOUSE_TABLES as T } from '../../shared/names.ts';
import { startStack } from '../local/stack.ts';
import { openBrowser } from '../support/browser.ts';

const GPUS = 10_000;
const PER_HOST = 8;
const METRICS = ['DCGM_FI_DEV_GPU_UTIL', 'DCGM_FI_DEV_GPU_TEMP', 'DCGM_FI_DEV_FB_USED', 'DCGM_FI_DEV_FB_FREE', 'DCGM_FI_DEV_POWER_USAGE', 'DCGM_FI_DEV_SM_CLOCK', 'DCGM_FI_DEV_MEM_CLOCK', 'DCGM_FI_DEV_MEM_COPY_UTIL', 'DCGM_FI_DEV_ENC_UTIL', 'DCGM_FI_DEV_DEC_UTIL'];
const SAMPLES = 6;
const RUNS = 5;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x: number) => `${x.toFixed(1)} ms`;

const stack = await startStack({ ingestWorkers: 0, collectWorkers: 0, env: { QUERY_LOG_LEVEL: 'warn' } });
const dir = mkdtempSync(join(tmpdir(), 'console-bench-'));
try {
  const ch = createClient({ url: stack.clickhouse.url, database: 'telemetry' });
  const t0 = Date.now();
  await ch.command({
    query: `INSERT INTO ${T.samples} (timestamp, metric_name, gpu_id, device, uuid, model_name, hostname, container, pod, namespace, value, labels_raw, upload_id, batch_id, line, received_at)
      SELECT toDateTime64('2025-07-18 20:00:00', 3, 'UTC') + toIntervalSecond(10 * (number % ${SAMPLES})) AS timestamp,
        {metrics:Array(String)}[1 + intDiv(number, ${SAMPLES}) % ${METRICS.length}] AS metric_name,
        toString(intDiv(number, ${SAMPLES * METRICS.length}) % ${PER_HOST}) AS gpu_id, concat('nvidia', gpu_id) AS device,
        concat('GPU-', leftPad(hex(intDiv(number, ${SAMPLES * METRICS.length})), 8, '0'), '-bench-0000-0000-000000000000') AS uuid,
        'NVIDIA H100 80GB HBM3' AS model_name,
        concat('bench-host-', leftPad(toString(intDiv(intDiv(number, ${SAMPLES * METRICS.length}), ${PER_HOST})), 4, '0')) AS hostname,
        '' AS container, '' AS pod, '' AS namespace, (number * 7919) % 100 AS value, '' AS labels_raw,
        'bench' AS upload_id, concat('bench.0.', toString(intDiv(number, 100000))) AS batch_id, toUInt32(number % 100000 + 2) AS line, now64(3, 'UTC') AS received_at
      FROM numbers(${GPUS * METRICS.length * SAMPLES})`,
    query_params: { metrics: METRICS },
  });
  // What collect runs after an insert: the rollup buckets of the stored batches.
  await recomputeRollups(ch, Array.from({ length: Math.ceil((GPUS * METRICS.length * SAMPLES) / 100_000) }, (_, i) => `bench.0.${i}`));
  console.log(`built ${GPUS.toLocaleString('en-US')} GPUs × ${METRICS.length} metrics × ${SAMPLES} samples (${(GPUS * METRICS.length * SAMPLES).toLocaleString('en-US')} rows) and rollups in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  // API answers behind the page (server side, warm).
  for (const path of ['/api/v1/gpus?limit=100', '/api/v1/hosts?limit=1000']) {
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const a = performance.now();
      const r = await fetch(stack.queryUrl + path);
      await r.arrayBuffer();
      if (!r.ok) throw new Error(`${path}: ${r.status}`);
      times.push(performance.now() - a);
    }
    console.log(`GET ${path}: median ${ms(median(times))} (of ${RUNS})`);
  }

  const loads: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const b = await openBrowser();
    try {
      const a = Date.now();
      await b.page.goto(`${stack.queryUrl}/#/fleet`);
      await b.page.waitForFunction((n) => document.querySelectorAll('table.gpus tbody tr').length === 100 && document.querySelector('#fleet-total [data-gpus]')?.getAttribute('data-gpus') === String(n), GPUS, { timeout: 120_000 });
      loads.push(Date.now() - a);
      if (b.errors.length) throw new Error(b.errors.join('\n'));
    } finally {
      await b.close();
    }
  }
  console.log(`fleet page with ${GPUS.toLocaleString('en-US')} GPUs (first 100 rows + fleet total): median ${ms(median(loads))}, runs ${loads.map((x) => x.toFixed(0)).join(', ')} ms`);

  // Chart: the console's Chart component in a page of the console's origin (bundle injected).
  const out = join(dir, 'bench.js');
  await build({ entryPoints: [join(import.meta.dirname, '..', '..', 'functions', 'query', 'console', 'bench.tsx')], bundle: true, format: 'iife', jsx: 'automatic', jsxImportSource: 'preact', outfile: out, minify: true, logLevel: 'warning' });
  const b = await openBrowser();
  try {
    await b.page.route('**/bench.js', (r) => r.fulfill({ path: out, contentType: 'text/javascript' }));
    await b.page.goto(`${stack.queryUrl}/docs`);
    await b.page.addScriptTag({ url: `${stack.queryUrl}/bench.js` });
    const results: { points: number; buildMs: number; firstPaintMs: number; setDataMs: number; plotted: number }[] = [];
    for (let i = 0; i < RUNS; i++) results.push(await b.page.evaluate(() => (window as any).benchRender(100_000)));
    if (results.some((r) => r.plotted !== 100_000)) throw new Error('not every point was plotted');
    console.log(
      `chart with 100,000 points (uPlot via the console's Chart): first paint median ${ms(median(results.map((r) => r.firstPaintMs)))}, ` +
        `repaint after setData median ${ms(median(results.map((r) => r.setDataMs)))}, columns built in ${ms(median(results.map((r) => r.buildMs)))}`,
    );
  } finally {
    await b.close();
  }
  await ch.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
  await stack.stop();
}
