// npx tsx test/bench/collapse.ts [-- --gpus N --days N --runs N]
// Which way of collapsing copies of a sample (uuid, metric_name, timestamp) is cheaper on a
// per-GPU window: `ORDER BY … LIMIT 1 BY` or `argMax(…, (received_at, batch_id, line))` with
// GROUP BY. Builds samples straight in ClickHouse (N GPUs × 10 metrics, one sample per 10 s, 10 %
// stored twice by a later upload), then times, for one GPU and a one-day window, a telemetry page
// (10,000 rows) and a per-metric summary each way, against the same SQL without collapsing.
import { parseArgs } from 'node:util';
import { clickhouseClient } from '../../shared/clickhouse.ts';
import { provisionClickHouse } from '../../shared/provision.ts';
import { startClickHouse } from '../support/servers.ts';

const { values } = parseArgs({ options: { gpus: { type: 'string', default: '50' }, days: { type: 'string', default: '2' }, runs: { type: 'string', default: '15' } } });
const GPUS = Number(values.gpus);
const DAYS = Number(values.days);
const RUNS = Number(values.runs);
const DB = 'collapse_bench';

const server = await startClickHouse();
const cfg = { CLICKHOUSE_URL: server.url, CLICKHOUSE_USER: 'default', CLICKHOUSE_PASSWORD: '', CLICKHOUSE_DATABASE: DB };
const admin = clickhouseClient(cfg, { database: null });
try {
  await provisionClickHouse(admin, DB);
  const ch = clickhouseClient(cfg);
  const perSeries = (DAYS * 86_400) / 10;
  const start = Date.UTC(2025, 6, 1);
  const insert = (upload: string, every: number, receivedOffsetS: number) =>
    ch.command({
      query: `INSERT INTO samples (timestamp, metric_name, gpu_id, device, uuid, model_name, hostname, container, pod, namespace, value, labels_raw, upload_id, batch_id, line, received_at)
        SELECT fromUnixTimestamp64Milli(toInt64({start:Int64} + intDiv(number, ${GPUS * 10}) * 10000 * ${every}), 'UTC') AS ts,
          concat('DCGM_M', toString(number % 10)), toString(intDiv(number % ${GPUS * 10}, 10) % 8), 'nvidia0',
          concat('GPU-', leftPad(toString(intDiv(number % ${GPUS * 10}, 10)), 8, '0')), 'H100', concat('host-', toString(intDiv(number % ${GPUS * 10}, 80))),
          '', '', '', toFloat64(number % 97), '', {upload:String}, concat({upload:String}, '.0.', toString(intDiv(number, 5000))), toUInt32(number % 5000 + 2),
          now64(3) + toIntervalSecond(${receivedOffsetS})
        FROM numbers(${Math.floor(perSeries / every) * GPUS * 10})`,
      query_params: { start, upload: upload },
      clickhouse_settings: { max_insert_block_size: '1000000' },
    });
  await insert('first', 1, 0);
  await insert('again', 10, 60); // every tenth sample again, received later
  await ch.command({ query: 'OPTIMIZE TABLE samples FINAL' });
  const rs = await ch.query({ query: 'SELECT count() AS n FROM samples', format: 'JSONEachRow' });
  const total = Number(((await rs.json()) as { n: string }[])[0].n);

  const where = `uuid = 'GPU-00000007' AND timestamp >= fromUnixTimestamp64Milli(${start + 3600_000}, 'UTC') AND timestamp < fromUnixTimestamp64Milli(${start + 3600_000 + 86_400_000}, 'UTC')`;
  const cols = 'timestamp, metric_name, value, gpu_id, device, uuid, model_name, hostname, container, pod, namespace, labels_raw, batch_id, line';
  const queries: Record<string, string> = {
    'page, no collapse': `SELECT ${cols} FROM samples WHERE ${where} ORDER BY timestamp, metric_name LIMIT 10000`,
    'page, LIMIT 1 BY': `SELECT ${cols} FROM samples WHERE ${where} ORDER BY timestamp, metric_name, received_at DESC, batch_id DESC, line DESC LIMIT 1 BY timestamp, metric_name LIMIT 10000`,
    'page, argMax': `SELECT timestamp, metric_name, ${cols.split(', ').slice(2).map((c) => `argMax(${c}, (received_at, batch_id, line)) AS ${c}_`).join(', ')} FROM samples WHERE ${where} GROUP BY timestamp, metric_name ORDER BY timestamp, metric_name LIMIT 10000`,
    'summary, no collapse': `SELECT metric_name, count(), min(value), max(value), avg(value), argMax(value, timestamp) FROM samples WHERE ${where} GROUP BY metric_name`,
    'summary, LIMIT 1 BY': `SELECT metric_name, count(), min(value), max(value), avg(value), argMax(value, timestamp) FROM (SELECT metric_name, timestamp, value FROM samples WHERE ${where} ORDER BY timestamp, metric_name, received_at DESC, batch_id DESC, line DESC LIMIT 1 BY timestamp, metric_name) GROUP BY metric_name`,
    'summary, argMax': `SELECT metric_name, count(), min(v), max(v), avg(v), argMax(v, ts) FROM (SELECT metric_name, timestamp AS ts, argMax(value, (received_at, batch_id, line)) AS v FROM samples WHERE ${where} GROUP BY metric_name, timestamp) GROUP BY metric_name`,
  };
  console.log(`samples: ${total.toLocaleString('en-US')} (${GPUS} GPUs × 10 metrics × ${DAYS} d at 10 s, 10 % stored twice); window: 1 GPU, 1 day (${(8640 * 10).toLocaleString('en-US')} samples)`);
  console.log('query                    median ms   p90 ms   rows');
  for (const [name, query] of Object.entries(queries)) {
    const times: number[] = [];
    let rows = 0;
    for (let i = 0; i < RUNS + 2; i++) {
      const t = performance.now();
      const r = await ch.query({ query, format: 'JSONCompactEachRow' });
      rows = ((await r.json()) as unknown[]).length;
      if (i >= 2) times.push(performance.now() - t); // two warm-up runs
    }
    times.sort((a, b) => a - b);
    console.log(`${name.padEnd(24)} ${times[Math.floor(times.length / 2)].toFixed(1).padStart(9)} ${times[Math.floor(times.length * 0.9)].toFixed(1).padStart(8)} ${String(rows).padStart(6)}`);
  }
  await ch.close();
} finally {
  await admin.close();
  await server.stop();
}
