// npm run scale:demo [-- --peak ROWS_PER_S --ramp S --plateau S --out DIR]
// The autoscaling story in one run: the local stack with no queue workers, the local autoscaler
// following the keda/ ScaledObjects (timings shortened and thresholds lowered so a laptop-sized
// load scales: printed at the start), and the load generator replaying the DCGM sample as live
// data with a profile — ramp up, plateau, stop. Every second it records the consumer lag per
// stream, the replicas per function, the rows sent and stored per second and the scale
// decisions, writes them as CSV and renders them as an SVG chart. It ends when both workers are
// back at zero, and checks by count that every replayed row is stored exactly once.
import { createClient } from '@clickhouse/client';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startAutoscaler, type AutoscaleDecision } from './autoscaler/index.ts';
import { ProcessPool } from './autoscaler/process-pool.ts';
import { loadScaledObjects } from './autoscaler/scaledobject.ts';
import { readConsumerLag } from './autoscaler/jsz.ts';
import { STREAMS } from '../../shared/names.ts';
import { replay } from './replay.ts';
import { timelineSvg, type TimelineRow } from './scale-chart.ts';
import { functionCommand, repoRoot, startStack } from './stack.ts';

const { values } = parseArgs({
  options: {
    peak: { type: 'string', default: '40000' },
    ramp: { type: 'string', default: '20' },
    plateau: { type: 'string', default: '40' },
    out: { type: 'string', default: join(repoRoot, 'docs') },
    'max-replicas': { type: 'string', default: '4' },
  },
});

const TARGETS = ['ingest', 'collect'] as const;
const FIXTURE = join(repoRoot, 'test/fixtures/dcgm_metrics_20250718_134233.csv');
/**
 * Demo settings over the ScaledObjects: fast polls and cooldowns, thresholds a laptop reaches.
 * lagThreshold is per stream; collect's ROLLUPS trigger keeps the manifest's (few, small events).
 */
const DEMO = { pollingInterval: 1, cooldownPeriod: 15, lagThreshold: { [STREAMS.uploads]: 4, [STREAMS.telemetry]: 4 } as Record<string, number>, scaleDownWindowS: 10 };

async function main() {
  const peak = Number(values.peak);
  const rampS = Number(values.ramp);
  const plateauS = Number(values.plateau);
  const maxReplicas = Number(values['max-replicas']);
  const out = resolve(values.out);
  const dir = mkdtempSync(join(tmpdir(), 'gputel-scale-demo-'));
  const stack = await startStack({
    dataDir: join(dir, 'data'),
    useBundles: true,
    ingestWorkers: 0,
    collectWorkers: 0,
    httpFunctions: ['upload'],
    // Small parts and batches: many messages, so the lag (in messages) shows the load.
    env: { UPLOAD_PART_BYTES: String(256 * 1024), INGEST_BATCH_ROWS: '1000' },
  });
  const ch = createClient({ url: stack.clickhouse.url, database: 'telemetry' });
  const decisions: AutoscaleDecision[] = [];
  const configs = loadScaledObjects(join(repoRoot, 'keda'), {
    monitorEndpoint: stack.nats.monitorEndpoint,
    minReplicaCount: 0,
    maxReplicaCount: maxReplicas,
    pollingInterval: DEMO.pollingInterval,
    cooldownPeriod: DEMO.cooldownPeriod,
    behavior: { scaleDown: { stabilizationWindowSeconds: DEMO.scaleDownWindowS, policies: [{ type: 'Percent', value: 100, periodSeconds: 5 }] } },
  }).map((c) => ({ ...c, triggers: c.triggers.map((t) => ({ ...t, lagThreshold: DEMO.lagThreshold[t.stream] ?? t.lagThreshold })) }));
  const autoscaler = startAutoscaler({
    scaledObjects: configs,
    env: stack.env,
    print: 'none',
    pools: (target) => new ProcessPool({ fn: target, env: stack.env, args: functionCommand(target as 'ingest' | 'collect', true), output: () => undefined }),
    onDecision: (d) => decisions.push(d),
  });
  console.log(`scale demo: peak ${peak} rows/s, ramp ${rampS} s, plateau ${plateauS} s; ScaledObjects from keda/ with ${JSON.stringify({ ...DEMO, maxReplicaCount: maxReplicas })}`);

  const started = Date.now();
  const elapsed = () => (Date.now() - started) / 1000;
  const rate = () => {
    const t = elapsed();
    return t < rampS ? Math.round((peak * (t + 1)) / rampS) : t < rampS + plateauS ? peak : 0;
  };
  const timeline: TimelineRow[] = [];
  let sentInSecond = 0;
  let storedBefore = 0;
  let seenDecisions = 0;
  const countRows = async () => Number(((await (await ch.query({ query: 'SELECT count() AS n FROM samples', format: 'JSONEachRow' })).json()) as { n: string }[])[0].n);
  const sample = async () => {
    const triggers = configs.flatMap((c) => c.triggers);
    const lags = await Promise.all(triggers.map((t) => readConsumerLag(t).then((l) => l.lag, () => NaN)));
    const stored = await countRows().catch(() => storedBefore);
    const lagOf = (stream: string) => lags[triggers.findIndex((t) => t.stream === stream)] ?? NaN;
    const fresh = decisions.slice(seenDecisions).filter((d) => d.to !== d.from);
    seenDecisions = decisions.length;
    const row: TimelineRow = {
      t: Math.round(elapsed() * 10) / 10,
      sent_rows_per_s: sentInSecond,
      stored_rows_per_s: stored - storedBefore,
      lag_ingest: lagOf(STREAMS.uploads),
      lag_collect: lagOf(STREAMS.telemetry),
      lag_rollups: lagOf(STREAMS.rollups),
      replicas_ingest: autoscaler.pools.ingest!.replicas(),
      replicas_collect: autoscaler.pools.collect!.replicas(),
      decisions: fresh.map((d) => `${d.target} ${d.from}→${d.to} (${d.kind}, lag ${d.lag})`).join('; '),
    };
    sentInSecond = 0;
    storedBefore = stored;
    timeline.push(row);
    console.log(`${String(row.t).padStart(4)} s  sent ${String(row.sent_rows_per_s).padStart(6)}/s  stored ${String(row.stored_rows_per_s).padStart(6)}/s  lag ingest ${row.lag_ingest} collect ${row.lag_collect} rollups ${row.lag_rollups}  replicas ingest ${row.replicas_ingest} collect ${row.replicas_collect}${row.decisions ? '  ' + row.decisions : ''}`);
  };
  let sampling = Promise.resolve();
  const timer = setInterval(() => (sampling = sampling.then(sample)), 1000);
  let ok = false;
  try {
    const result = await replay({
      file: FIXTURE,
      url: stack.uploadUrl,
      rate,
      loop: true,
      durationMs: (rampS + plateauS) * 1000,
      onUpload: (u) => (sentInSecond += u.status === 202 ? u.rows : 0),
    });
    // Stop: no more load. Wait until every row is stored and both functions are back at zero.
    const deadline = Date.now() + 300_000;
    while (Date.now() < deadline) {
      const last = timeline.at(-1);
      if (last && last.replicas_ingest === 0 && last.replicas_collect === 0 && last.lag_ingest === 0 && last.lag_collect === 0 && last.lag_rollups === 0 && (await countRows()) >= result.rows) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    await new Promise((r) => setTimeout(r, 2000));
    clearInterval(timer);
    await sampling;
    const stored = await countRows();
    const distinct = Number(((await (await ch.query({ query: 'SELECT uniqExact(uuid, metric_name, timestamp) AS n FROM samples', format: 'JSONEachRow' })).json()) as { n: string }[])[0].n);
    const maxReplicasSeen = Object.fromEntries(TARGETS.map((t) => [t, Math.max(...timeline.map((r) => r[`replicas_${t}`]))]));
    const backToZero = TARGETS.every((t) => autoscaler.pools[t]!.replicas() === 0);
    ok = stored === result.rows && distinct === result.rows && result.failed === 0 && backToZero;
    const summary = `replayed ${result.rows.toLocaleString('en-US')} rows in ${result.uploads} uploads${result.behind ? ` (${result.behind.toLocaleString('en-US')} not sent: the stack was slower than the profile)` : ''}${result.retries ? `, ${result.retries} attempts repeated` : ''}${result.failed ? `, ${result.failed} unanswered` : ''}; stored ${stored.toLocaleString('en-US')} (${distinct.toLocaleString('en-US')} distinct samples); max replicas ${JSON.stringify(maxReplicasSeen)}; workers back at zero: ${backToZero}`;
    console.log(`\n${summary}\n${ok ? 'OK: every replayed row stored exactly once' : 'FAILED: counts differ or workers did not return to zero'}`);

    mkdirSync(out, { recursive: true });
    const columns = Object.keys(timeline[0] ?? {}) as (keyof TimelineRow)[];
    const csvCell = (v: unknown) => (typeof v === 'string' && /[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : String(v));
    writeFileSync(join(out, 'scale-demo.csv'), [columns.join(','), ...timeline.map((r) => columns.map((c) => csvCell(r[c])).join(','))].join('\n') + '\n');
    const profile = `replay of the DCGM sample: ramp to ${peak.toLocaleString('en-US')} rows/s over ${rampS} s, plateau ${plateauS} s, stop`;
    writeFileSync(join(out, 'scale-demo.svg'), await timelineSvg(timeline, `Scale demo: ${profile}`, summary));
    console.log(`timeline: ${join(out, 'scale-demo.csv')}, chart: ${join(out, 'scale-demo.svg')}`);
  } finally {
    clearInterval(timer);
    await autoscaler.stop();
    await ch.close();
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  if (!ok) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
