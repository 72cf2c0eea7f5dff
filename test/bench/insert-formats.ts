// npm run bench:formats [-- --rows N --insert N]
// ClickHouse's CPU per row for the same sample batches inserted as Native (the batch format,
// shared/sample-batch.ts), RowBinary and TabSeparated (the previous format), with and without the
// materialized views, raw or compressed (gzip level 1, as batches were; zstd level 1, as they
// are): CPU of the engine process over the inserts (merges stopped; best of 3), and the bytes per
// row that would cross JetStream.
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { clickhouseClient } from '../../shared/clickhouse.ts';
import { clickhouseEnv, parseEnv } from '../../shared/config.ts';
import { SAMPLE_INSERT_COLUMNS, migrations } from '../../shared/migrations.ts';
import { CLICKHOUSE_TABLES } from '../../shared/names.ts';
import { provisionClickHouse } from '../../shared/provision.ts';
import { SampleBatchEncoder } from '../../shared/sample-batch.ts';
import { zstdCompress, zstdReady } from '../../shared/zstd.ts';
import type { Sample } from '../../shared/schemas.ts';
import { fixtureSamples } from '../support/batch.ts';
import { startClickHouse } from '../support/servers.ts';
import { cpuSeconds } from './proc.ts';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '500000' }, insert: { type: 'string', default: '100000' }, batch: { type: 'string', default: '5000' } } });
const ROWS = Number(values.rows);
const INSERT = Number(values.insert);
const BATCH = Number(values.batch);

type Row = { sample: Sample; line: number };
const TEXT = (s: Sample) => [s.metric_name, s.gpu_id, s.device, s.uuid, s.modelName, s.Hostname, s.container, s.pod, s.namespace];

function native(rows: Row[], upload: string, batch: string): Buffer {
  const e = new SampleBatchEncoder(upload, batch, 1752900000000, rows.length);
  for (const r of rows) e.add(r.sample, r.sample.timestamp, r.line);
  return e.finish();
}

function rowBinary(rows: Row[], upload: string, batch: string): Buffer {
  const parts: Buffer[] = [];
  const str = (s: string) => {
    const b = Buffer.from(s);
    const len: number[] = [];
    let n = b.length;
    while (n >= 0x80) (len.push((n & 0x7f) | 0x80), (n >>>= 7));
    len.push(n);
    parts.push(Buffer.from(len), b);
  };
  const num = (n: number, bytes: 4 | 8, float = false) => {
    const b = Buffer.alloc(bytes);
    if (float) b.writeDoubleLE(n);
    else if (bytes === 8) b.writeBigInt64LE(BigInt(n));
    else b.writeUInt32LE(n);
    parts.push(b);
  };
  for (const { sample: s, line } of rows) {
    num(s.timestamp, 8);
    TEXT(s).forEach(str);
    num(s.value, 8, true);
    str(s.labels_raw);
    str(upload);
    str(batch);
    num(line, 4);
    num(1752900000000, 8);
  }
  return Buffer.concat(parts);
}

const tsvEscape = (s: string) => s.replace(/[\t\n\r\\]/g, (c) => (c === '\t' ? '\\t' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\\\'));
const chTime = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 23);
function tabSeparated(rows: Row[], upload: string, batch: string): Buffer {
  return Buffer.from(
    rows.map(({ sample: s, line }) => [chTime(s.timestamp), ...TEXT(s).map(tsvEscape), String(s.value), tsvEscape(s.labels_raw), upload, batch, String(line), chTime(1752900000000)].join('\t') + '\n').join(''),
  );
}

/** The fixture replicated with distinct uuids and shifted times, like the bench file. */
function samples(n: number): Row[] {
  const base = fixtureSamples();
  return Array.from({ length: n }, (_, i) => {
    const k = Math.floor(i / base.length);
    const { sample: s, line } = base[i % base.length];
    const uuid = s.uuid.replace(/GPU-[0-9a-f]{8}-/, `GPU-${k.toString(16).padStart(8, '0')}-`);
    return { sample: { ...s, uuid, labels_raw: s.labels_raw.replace(s.uuid, uuid), timestamp: s.timestamp + k * 60_000 }, line };
  });
}

async function main() {
  const server = await startClickHouse();
  try {
    const env = { CLICKHOUSE_URL: server.url, CLICKHOUSE_DATABASE: 'telemetry' };
    const admin = clickhouseClient(parseEnv(clickhouseEnv, env), { database: null });
    await provisionClickHouse(admin, 'telemetry');
    await admin.close();
    const ch = clickhouseClient(parseEnv(clickhouseEnv, env));
    await zstdReady();
    const rows = samples(ROWS);
    const views = migrations('telemetry').filter((s) => s.includes('MATERIALIZED VIEW'));
    console.log(`${ROWS.toLocaleString('en-US')} rows, batches of ${BATCH}, inserts of ${INSERT} rows; ClickHouse CPU µs/row (best of 3)`);
    for (const withViews of [true, false]) {
      if (!withViews) for (const v of ['gpus_mv', 'metric_stats_mv', 'collected_batches_mv']) await ch.command({ query: `DROP VIEW IF EXISTS ${v}` });
      for (const [format, encode] of Object.entries({ Native: native, RowBinary: rowBinary, TabSeparated: tabSeparated })) {
        for (const encoding of ['raw', 'gzip', 'zstd'] as const) {
          const bodies: Buffer[] = [];
          for (let b = 0; b * BATCH < ROWS; b++) {
            const body = encode(rows.slice(b * BATCH, (b + 1) * BATCH), 'up', `up.0.${b}`);
            bodies.push(encoding === 'gzip' ? gzipSync(body, { level: 1, memLevel: 9 }) : encoding === 'zstd' ? zstdCompress(body, 1) : body);
          }
          const wire = bodies.reduce((n, b) => n + b.length, 0) / ROWS;
          let best = Infinity;
          for (let rep = 0; rep < 3; rep++) {
            for (const t of Object.values(CLICKHOUSE_TABLES)) await ch.command({ query: `TRUNCATE TABLE ${t}` });
            await ch.command({ query: 'SYSTEM STOP MERGES' });
            const c0 = cpuSeconds(server.process.pid);
            for (let g = 0; g < bodies.length; g += INSERT / BATCH) {
              const r = await ch.exec({
                query: `INSERT INTO samples (${SAMPLE_INSERT_COLUMNS.join(', ')}) FORMAT ${format}`,
                values: Readable.from(bodies.slice(g, g + INSERT / BATCH), { objectMode: false }),
                http_headers: encoding === 'raw' ? undefined : { 'Content-Encoding': encoding },
                clickhouse_settings: { input_format_parallel_parsing: 0, max_insert_block_size: '1048576', min_insert_block_size_rows: '1048576', min_insert_block_size_bytes: '0', insert_deduplicate: 1, insert_deduplication_token: `${format}-${encoding}-${rep}-${g}` },
              });
              for await (const _ of r.stream) void _;
            }
            best = Math.min(best, cpuSeconds(server.process.pid) - c0);
          }
          console.log(`  ${format.padEnd(12)} views ${withViews ? 'on ' : 'off'}  ${encoding.padEnd(4)}  ${((best * 1e6) / ROWS).toFixed(2).padStart(6)} µs/row   ${wire.toFixed(0).padStart(4)} bytes/row on the wire`);
        }
      }
    }
    await ch.close();
  } finally {
    await server.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
