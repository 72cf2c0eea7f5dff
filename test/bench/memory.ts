// npm run bench:memory [-- --mib 10,100,1024 --ingest N --collect N]
// Memory stays flat: on one stack (esbuild bundles), uploads generated DCGM files of the given
// sizes, smallest first, and prints each function process's peak RSS (VmHWM, reset before each
// upload) for each, and whether the largest upload's peak is within 20 % of the smallest one's,
// per process and per function (its largest replica's peak).
// The smallest size is uploaded twice, two files of different GPUs: first to processes that have
// handled nothing yet (`cold`), then again. The verdict compares with the second: a process's
// first upload runs before its code is compiled and paged in (collect: +4 MiB of node's own
// code pages resident by the second upload), a one-off cost of a fresh process rather than
// memory that grows with the data, and the pods are long-lived. The ratio to the cold upload is
// printed beside it.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { uploadFile } from '../../functions/upload/cli.ts';
import { repoRoot, startStack } from '../local/stack.ts';
import { generateCsv } from './generate.ts';
import { peakRssMiB, resetPeakRss } from './proc.ts';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '10,100,1024' },
    ingest: { type: 'string', default: '2' },
    collect: { type: 'string', default: '1' },
  },
});

const BYTES_PER_ROW = 428; // the generated DCGM rows
const quiet = { isTTY: false, write: () => true } as unknown as NodeJS.WriteStream;

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'gputel-memory-'));
  const fixture = join(repoRoot, 'test/fixtures/dcgm_metrics_20250718_134233.csv');
  const sizes = values.mib.split(',').map(Number);
  if (sizes.length < 2 || sizes.some((n) => !(n > 0))) throw new Error('--mib must list at least two sizes in MiB, e.g. 10,1024');
  const rowsOf = (mib: number) => Math.round((mib * 1024 ** 2) / BYTES_PER_ROW);
  const cold = `${sizes[0]} MiB cold`;
  const files: Record<string, string> = { [cold]: join(work, 'cold.csv') };
  let replicas = 0;
  for (const mib of sizes) {
    files[`${mib} MiB`] = join(work, `${mib}.csv`);
    replicas = Math.max(replicas, (await generateCsv(fixture, files[`${mib} MiB`], rowsOf(mib))).copies);
  }
  // Starts past the last replica of every other file: its GPUs are new to the store.
  await generateCsv(fixture, files[cold], rowsOf(sizes[0]), 'fleets', replicas);
  const stack = await startStack({
    dataDir: join(work, 'data'),
    useBundles: true,
    ingestWorkers: Number(values.ingest),
    collectWorkers: Number(values.collect),
    httpFunctions: ['upload'],
  });
  try {
    const peaks: Record<string, Record<string, number>> = {};
    for (const [size, file] of Object.entries(files)) {
      for (const p of stack.processes) resetPeakRss(p.process.pid);
      const t0 = Date.now();
      const status = await uploadFile(file, { url: stack.uploadUrl, wait: true, pollMs: 500, out: quiet, timeoutMs: 1_800_000 });
      if (status.state !== 'done') throw new Error(`${size} upload ended ${status.state}: ${status.error ?? ''}`);
      console.log(`${size}: ${(statSync(file).size / 1024 ** 2).toFixed(0)} MiB, ${status.rows_stored.toLocaleString('en-US')} rows stored in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      for (const p of stack.processes) (peaks[p.name] ??= {})[size] = peakRssMiB(p.process.pid);
    }
    const names = Object.keys(files);
    const [smallest, largest] = [names[1], names.at(-1)!];
    console.log(`\npeak RSS (MiB) by upload size; ratio: ${largest} / ${smallest} (the verdict), cold: ${largest} / ${cold}`);
    console.log(`  ${'process'.padEnd(10)} ${names.map((n) => n.padStart(14)).join(' ')}   ratio   cold`);
    const line = (name: string, p: Record<string, number>) => {
      const ratio = p[largest] / p[smallest];
      console.log(`  ${name.padEnd(10)} ${names.map((n) => p[n].toFixed(0).padStart(14)).join(' ')}   ${ratio.toFixed(2)}   ${(p[largest] / p[cold]).toFixed(2)}${ratio <= 1.2 ? '' : '  > 1.2'}`);
      return ratio <= 1.2;
    };
    for (const [name, p] of Object.entries(peaks)) line(name, p);
    // A function's peak is its largest replica's: what its pod memory limit must hold. Per replica
    // the small upload is uneven (a 10 MiB file gives one ingest worker an 8 MiB part and the
    // other the rest), so the verdict compares functions.
    const functions = new Map<string, Record<string, number>>();
    for (const [name, p] of Object.entries(peaks)) {
      const fn = name.replace(/#\d+$/, '');
      const f = functions.get(fn) ?? {};
      for (const n of names) f[n] = Math.max(f[n] ?? 0, p[n]);
      functions.set(fn, f);
    }
    console.log(`peak RSS (MiB) by function (its largest replica)`);
    let flat = true;
    for (const [fn, p] of functions) if (!line(fn, p)) flat = false;
    console.log(flat ? 'memory is flat: every function within 20 %' : 'memory is NOT flat for the functions marked');
    if (!flat) process.exitCode = 1;
  } finally {
    await stack.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
