// npm run bench:stages [-- --rows N]
// CPU per row of each stage of the pipeline run one after the other (not overlapped as in
// `npm run bench`), so nats-server's CPU can be attributed to what it does for each stage:
//  1. upload: the file into the object store (upload process + nats-server);
//  2. ingest: parts read from the object store, batches published to TELEMETRY (1 ingest worker);
//  3. collect: batches consumed and inserted (1 collect worker + ClickHouse).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createClient } from '@clickhouse/client';
import { uploadFile } from '../../functions/upload/cli.ts';
import { CONSUMERS, STREAMS } from '../../shared/names.ts';
import { readConsumerLag } from '../local/autoscaler/jsz.ts';
import { repoRoot, startStack, type FunctionProcess } from '../local/stack.ts';
import { waitFor } from '../support/ports.ts';
import { generateCsv } from './generate.ts';
import { cpuSeconds } from './proc.ts';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000000' } } });
const quiet = { isTTY: false, write: () => true } as unknown as NodeJS.WriteStream;

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'gputel-stages-'));
  const csv = join(work, 'bench.csv');
  const { rows } = await generateCsv(join(repoRoot, 'test/fixtures/dcgm_metrics_20250718_134233.csv'), csv, Number(values.rows));
  const stack = await startStack({ dataDir: join(work, 'data'), useBundles: true, ingestWorkers: 0, collectWorkers: 0, httpFunctions: ['upload'] });
  const ch = createClient({ url: stack.clickhouse.url, database: 'telemetry' });
  const lag = (stream: string, consumer: string) =>
    readConsumerLag({ monitoringEndpoint: stack.nats.monitorEndpoint, account: '$G', stream, consumer, useHttps: false }).then((l) => l.lag);
  try {
    const table: { stage: string; cpu: Record<string, number>; sec: number }[] = [];
    const measure = async (stage: string, procs: () => Record<string, number | undefined>, work: () => Promise<void>) => {
      const before = Object.fromEntries(Object.entries(procs()).map(([k, pid]) => [k, cpuSeconds(pid)]));
      const t0 = Date.now();
      await work();
      const cpu = Object.fromEntries(Object.entries(procs()).map(([k, pid]) => [k, cpuSeconds(pid) - before[k]]));
      table.push({ stage, cpu, sec: (Date.now() - t0) / 1000 });
    };
    const pidOf = (p: FunctionProcess | undefined) => p?.process.pid;
    const nats = stack.nats.process.pid;
    const clickhouse = stack.clickhouse.process.pid;
    const upload = pidOf(stack.processes.find((p) => p.name.startsWith('upload')));
    await measure('1 upload → object store', () => ({ upload, 'nats-server': nats }), async () => {
      const status = await uploadFile(csv, { url: stack.uploadUrl, wait: false, out: quiet });
      if (status.state !== 'received') throw new Error(`upload ended ${status.state}`);
    });
    const ingest = stack.startFunction('ingest');
    await measure('2 ingest: object store → TELEMETRY', () => ({ ingest: pidOf(ingest), 'nats-server': nats }), () =>
      waitFor(async () => (await lag(STREAMS.uploads, CONSUMERS.ingest)) === 0, 'every part ingested', 600_000, 200),
    );
    const collect = stack.startFunction('collect');
    await measure('3 collect: TELEMETRY → ClickHouse', () => ({ collect: pidOf(collect), 'nats-server': nats, clickhouse }), () =>
      waitFor(async () => {
        const r = await ch.query({ query: 'SELECT count() AS n FROM samples', format: 'JSONEachRow' });
        return Number(((await r.json()) as { n: string }[])[0].n) === rows && (await lag(STREAMS.telemetry, CONSUMERS.collect)) === 0;
      }, 'every row stored', 600_000, 200),
    );
    console.log(`${rows.toLocaleString('en-US')} rows; CPU µs per row of each process, stage by stage:`);
    for (const t of table) {
      const cells = Object.entries(t.cpu).map(([k, s]) => `${k} ${((s * 1e6) / rows).toFixed(2)}`);
      console.log(`  ${t.stage.padEnd(38)} ${t.sec.toFixed(1).padStart(6)} s   ${cells.join('   ')}`);
    }
  } finally {
    await ch.close();
    await stack.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
