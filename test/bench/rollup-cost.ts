// npx tsx test/bench/rollup-cost.ts [-- --batches 10 --rows 100000 --runs 2 --coalesce 1 --keys 16384]
// What collect's rollup recompute costs ClickHouse, against storing the samples themselves, in
// ClickHouse CPU µs per sample (the server process's /proc CPU time, so background merges that
// run during a statement count against it). Per run and file shape, a fresh database gets
// `batches` INSERTs of `rows` samples straight from numbers() (DCGM-like rows, labels_raw
// included, so the insert pays the labels map and every view as collect's INSERT does), each
// followed by the three recompute statements exactly as collect runs them (shared/rollups.ts);
// then the merges still running are waited for and reported on their own. `--coalesce K` runs
// the recompute once per K batches, for all K (what a pass over several pending batches costs),
// in slices of GPUs of at most `--keys` (uuid, minute) keys, cut as collect cuts a pass; run one
// statement at a time (collect runs ROLLUP_SLICE_CONCURRENCY slices at once), so that the engine's
// CPU is charged to each level.
//   fleets: every batch its own GPUs, one sample per (GPU, metric): `npm run bench`'s default file,
//           where every sample makes one new row in each level (the recompute's worst case);
//   series: the same GPUs in every batch, 10 s apart (one scrape per batch, as remote write or a
//           replay sends live data): each recompute re-reads the minute's and the hour's rows.
import { parseArgs } from 'node:util';
import type { ClickHouseClient } from '@clickhouse/client';
import { clickhouseClient } from '../../shared/clickhouse.ts';
import { provisionClickHouse } from '../../shared/provision.ts';
import { levelStatements, MIN_SLICE_KEYS, rollupSlices, ROLLUP_INSERT_SETTINGS, ROLLUP_KEYS_PER_STATEMENT, ROLLUP_SLICE_CONCURRENCY } from '../../shared/rollups.ts';
import { startClickHouse } from '../support/servers.ts';
import { cpuSeconds } from './proc.ts';

const { values } = parseArgs({
  options: {
    batches: { type: 'string', default: '10' },
    rows: { type: 'string', default: '100000' },
    runs: { type: 'string', default: '2' },
    coalesce: { type: 'string', default: '1' },
    /** (uuid, minute) keys per recompute statement, as collect slices a pass. */
    keys: { type: 'string', default: String(ROLLUP_KEYS_PER_STATEMENT) },
  },
});
const BATCHES = Number(values.batches);
const ROWS = Math.floor(Number(values.rows) / 10) * 10;
const RUNS = Number(values.runs);
const COALESCE = Math.max(1, Number(values.coalesce));
const SHAPES = ['fleets', 'series'] as const;
const LEVELS = ['1 m', '1 h', '1 d'];

const server = await startClickHouse();
const pid = server.process.pid;
const cfg = { CLICKHOUSE_URL: server.url, CLICKHOUSE_USER: 'default', CLICKHOUSE_PASSWORD: '', CLICKHOUSE_DATABASE: 'default' };
const admin = clickhouseClient(cfg, { database: null });

/** One batch as collect stores it: `ROWS` samples of ROWS / 10 GPUs × 10 metrics. */
function batchInsert(shape: (typeof SHAPES)[number], b: number): string {
  const gpu = `intDiv(number, 10)`;
  const uuid = shape === 'fleets' ? `concat('GPU-', leftPad(hex(${b}), 8, '0'), '-', toString(${gpu}))` : `concat('GPU-00000000-', toString(${gpu}))`;
  const seconds = shape === 'fleets' ? b * 60 : b * 10;
  const host = `concat('host-', toString(intDiv(${gpu}, 8)))`;
  return `INSERT INTO samples (timestamp, metric_name, gpu_id, device, uuid, model_name, hostname, container, pod, namespace, value, labels_raw, upload_id, batch_id, line, received_at)
    SELECT toDateTime64('2025-07-18 20:00:00', 3, 'UTC') + ${seconds} + intDiv(number % 80, 20), concat('DCGM_FI_DEV_M', toString(number % 10)),
      toString(${gpu} % 8), concat('nvidia', toString(${gpu} % 8)), ${uuid} AS u, 'NVIDIA H100 80GB HBM3', ${host} AS h, '', '', '',
      toFloat64(number % 97),
      concat('DCGM_FI_DRIVER_VERSION="535.129.03",Hostname="', h, '",UUID="', u, '",__name__="DCGM_FI_DEV_M', toString(number % 10),
        '",device="nvidia', toString(${gpu} % 8), '",gpu="', toString(${gpu} % 8), '",instance="', h, ':9400",job="dcgm",modelName="NVIDIA H100 80GB HBM3"'),
      'u${b}', 'u${b}.0.0', toUInt32(number + 2), now64(3)
    FROM numbers(${ROWS})`;
}

async function mergesDone(ch: ClickHouseClient): Promise<void> {
  for (let quiet = 0; quiet < 3; ) {
    const rs = await ch.query({ query: 'SELECT count() AS n FROM system.merges', format: 'JSONEachRow' });
    quiet = Number((await rs.json<{ n: string }>())[0].n) === 0 ? quiet + 1 : 0;
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** CPU µs per sample: [insert, 1 m, 1 h, 1 d, merges after]. */
async function measure(shape: (typeof SHAPES)[number], db: string): Promise<number[]> {
  await provisionClickHouse(admin, db);
  const ch = clickhouseClient({ ...cfg, CLICKHOUSE_DATABASE: db });
  await mergesDone(ch);
  const cpu = [0, 0, 0, 0, 0];
  const statements = levelStatements('batches');
  try {
    for (let b = 0; b < BATCHES; b++) {
      let t = cpuSeconds(pid);
      await ch.command({ query: batchInsert(shape, b), clickhouse_settings: { max_insert_block_size: '1048576', min_insert_block_size_rows: '1048576', min_insert_block_size_bytes: '0' } });
      cpu[0] += cpuSeconds(pid) - t;
      if ((b + 1) % COALESCE !== 0 && b !== BATCHES - 1) continue;
      const ids = Array.from({ length: b - Math.floor(b / COALESCE) * COALESCE + 1 }, (_, i) => `u${Math.floor(b / COALESCE) * COALESCE + i}.0.0`);
      // Slices as collect's recomputeRollups cuts them (the query for the slices is charged to 1 m).
      t = cpuSeconds(pid);
      const slices = await rollupSlices(ch, ids, Number(values.keys), ROLLUP_SLICE_CONCURRENCY, MIN_SLICE_KEYS, ids.length * ROWS);
      cpu[1] += cpuSeconds(pid) - t;
      for (const slice of slices) {
        for (const [level, query] of statements.entries()) {
          t = cpuSeconds(pid);
          await ch.command({ query, query_params: { ids, ...slice }, clickhouse_settings: ROLLUP_INSERT_SETTINGS });
          cpu[level + 1] += cpuSeconds(pid) - t;
        }
      }
    }
    const t = cpuSeconds(pid);
    await mergesDone(ch);
    cpu[4] = cpuSeconds(pid) - t;
  } finally {
    await ch.close();
  }
  return cpu.map((s) => (s * 1e6) / (BATCHES * ROWS));
}

try {
  console.log(`${BATCHES} batches of ${ROWS.toLocaleString('en-US')} samples per run, recomputed every ${COALESCE} batch(es); ClickHouse CPU µs per sample`);
  console.log(`| shape | run | samples insert | ${LEVELS.map((l) => `rollup ${l}`).join(' | ')} | rollups | rollups / insert | merges after |`);
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  let n = 0;
  for (let run = 1; run <= RUNS; run++) {
    for (const shape of SHAPES) {
      const [insert, m1, h1, d1, merges] = await measure(shape, `rollup_cost_${n++}`);
      const rollups = m1 + h1 + d1;
      const f = (x: number) => x.toFixed(2);
      console.log(`| ${shape} | ${run} | ${f(insert)} | ${f(m1)} | ${f(h1)} | ${f(d1)} | ${f(rollups)} | ${(rollups / insert).toFixed(2)} | ${f(merges)} |`);
    }
  }
} finally {
  await admin.close();
  await server.stop();
}
