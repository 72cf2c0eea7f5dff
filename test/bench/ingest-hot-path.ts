// npm run bench:ingest [-- --rows N]
// CPU per row of ingest's stages on the benchmark file, in this process (no NATS): the reference
// path (csv-parse + zod + batch encoding), the byte-level path (scan, check, encode), its stages
// separately, and batch compression. Prints µs/row; lower is better.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import type { PubAck } from 'nats';
import { parseEnv } from '../../shared/config.ts';
import { SampleBatchEncoder } from '../../shared/sample-batch.ts';
import { DCGM_COLUMNS } from '../../shared/schemas.ts';
import { ingestEnv } from '../../functions/ingest/config.ts';
import { FastRows } from '../../functions/ingest/fast-rows.ts';
import { PartOutput } from '../../functions/ingest/output.ts';
import { referenceRows } from '../../functions/ingest/reference.ts';
import { columnIndexes } from '../../functions/ingest/rows.ts';
import { scanCsv } from '../../functions/ingest/scan.ts';
import { splitCsv } from '../../functions/upload/split.ts';
import { repoRoot } from '../local/stack.ts';
import { generateCsv } from './generate.ts';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '200000' }, parts: { type: 'string', default: '8388608' } } });

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'gputel-ingest-bench-'));
  try {
    const file = join(dir, 'bench.csv');
    await generateCsv(join(repoRoot, 'test/fixtures/dcgm_metrics_20250718_134233.csv'), file, Number(values.rows));
    const split = await splitCsv(Readable.from([readFileSync(file)]), Number(values.parts));
    const parts: { bytes: Buffer; firstLine: number }[] = [];
    for await (const p of split.parts) parts.push({ bytes: Buffer.from(p.body), firstLine: p.firstLine });
    const indexes = columnIndexes(DCGM_COLUMNS);
    const cfg = parseEnv(ingestEnv, {});
    const rows = (await Promise.all(parts.map((p) => scanCsv(p.bytes)))).reduce((n, s) => n + (s.ok ? s.part.records : 0), 0);
    const cpu = async (name: string, fn: () => Promise<unknown> | unknown) => {
      await fn(); // warm-up
      const best: number[] = [];
      for (let k = 0; k < 3; k++) {
        const c0 = process.cpuUsage();
        await fn();
        const c = process.cpuUsage(c0);
        best.push((c.user + c.system) / rows);
      }
      console.log(`${name.padEnd(44)} ${Math.min(...best).toFixed(2).padStart(7)} µs/row`);
    };
    const data = (p: { firstLine: number }, i: number) => ({ uploadId: 'u', part: i, object: 'o', header: [...DCGM_COLUMNS], firstLine: p.firstLine, bytes: 0, restamp: false, receivedAt: 0 });
    const bodies: Buffer[] = [];
    const publish = async (b: { body: Uint8Array }) => (bodies.push(Buffer.from(b.body)), {} as PubAck);
    console.log(`${rows.toLocaleString('en-US')} rows in ${parts.length} parts`);
    await cpu('reference: csv-parse + zod + encode', async () => {
      for (const [i, p] of parts.entries()) {
        const out = new PartOutput(cfg, data(p, i), publish);
        await referenceRows(p.bytes, indexes, p.firstLine, out);
        await out.end();
      }
    });
    await cpu('scan only', () => parts.forEach((p) => scanCsv(p.bytes)));
    const scanned = parts.map((p) => scanCsv(p.bytes)).map((s) => (s.ok ? s.part : undefined)!);
    await cpu('check only (on scanned fields)', () =>
      parts.forEach((p, i) => {
        const fr = new FastRows(indexes);
        for (let r = 0; r < scanned[i].records; r++) fr.check(p.bytes, scanned[i], r);
      }),
    );
    await cpu('check + encode (on scanned fields)', () =>
      parts.forEach((p, i) => {
        const fr = new FastRows(indexes);
        const e = new SampleBatchEncoder('u', 'u.0.0', 0, cfg.INGEST_BATCH_ROWS);
        for (let r = 0; r < scanned[i].records; r++) {
          if (fr.check(p.bytes, scanned[i], r) === undefined) fr.write(p.bytes, scanned[i], r, e, fr.timestamp, r);
          if (e.rows >= cfg.INGEST_BATCH_ROWS) (e.finish(), e.restart('u.0.1'));
        }
        e.finish();
      }),
    );
    bodies.length = 0;
    await cpu('byte-level path: scan + check + encode', async () => {
      for (const [i, p] of parts.entries()) {
        const s = scanCsv(p.bytes);
        if (!s.ok) throw new Error(s.reason);
        const out = new PartOutput(cfg, data(p, i), publish);
        const fr = new FastRows(indexes);
        for (let r = 0; r < s.part.records; r++) {
          if (fr.check(p.bytes, s.part, r) !== undefined) continue;
          fr.write(p.bytes, s.part, r, out.encoder, fr.timestamp, p.firstLine + s.part.lineOffset[r]);
          if (out.added()) await out.flush();
        }
        await out.end();
      }
    });
    const some = bodies.slice(0, Math.max(1, Math.floor(bodies.length / 4)));
    await cpu('gzip level 1 of the batches', () => bodies.forEach((b) => gzipSync(b, { level: 1, memLevel: 9 })));
    const raw = some.reduce((n, b) => n + b.length, 0);
    const gz = some.reduce((n, b) => n + gzipSync(b, { level: 1, memLevel: 9 }).length, 0);
    console.log(`batch bytes per row: ${(bodies.reduce((n, b) => n + b.length, 0) / rows / 4).toFixed(0)} Native, ≈ ${((bodies.reduce((n, b) => n + b.length, 0) / rows / 4) * (gz / raw)).toFixed(0)} gzip (${cfg.INGEST_BATCH_ROWS} rows per batch)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
