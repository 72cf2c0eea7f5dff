import * as vega from 'vega';
import * as vl from 'vega-lite';

// The scale demo's timeline as a chart (vega-lite compiled to vega, rendered to SVG in Node: no
// browser, no canvas): rows per second sent and stored, consumer lag per stream, replicas per
// function with the autoscaler's scale decisions marked.

export interface TimelineRow {
  t: number;
  sent_rows_per_s: number;
  stored_rows_per_s: number;
  lag_ingest: number;
  /** TELEMETRY (batches); collect's other consumer is lag_rollups. */
  lag_collect: number;
  lag_rollups: number;
  replicas_ingest: number;
  replicas_collect: number;
  decisions: string;
}

export async function timelineSvg(rows: TimelineRow[], title: string, subtitle: string): Promise<string> {
  const long = (fields: Record<string, keyof TimelineRow>) => ({
    values: rows.flatMap((r) => Object.entries(fields).map(([series, k]) => ({ t: r.t, series, value: r[k] as number }))),
    series: Object.keys(fields),
  });
  // The first series of every panel is blue, the second orange (ingest, then collect), a third green.
  const panel = ({ values: data, series }: { values: object[]; series: string[] }, y: string, heading: string, height = 140) => ({
    title: { text: heading, anchor: 'start', fontSize: 12 },
    height,
    width: 720,
    data: { values: data },
    mark: { type: 'line', interpolate: 'step-after', strokeWidth: 2 },
    encoding: {
      x: { field: 't', type: 'quantitative', title: 'seconds since start' },
      y: { field: 'value', type: 'quantitative', title: y },
      color: { field: 'series', type: 'nominal', title: null, scale: { domain: series, range: ['#4c78a8', '#f58518', '#54a24b'] } },
    },
  });
  const decisions = rows.flatMap((r) => (r.decisions ? r.decisions.split('; ').map((d) => ({ t: r.t, decision: d })) : []));
  const replicas = panel(long({ ingest: 'replicas_ingest', collect: 'replicas_collect' }), 'replicas', 'Replicas per function (dashed: a scale decision)', 110);
  const spec = {
    title: { text: title, subtitle },
    vconcat: [
      panel(long({ 'sent (replay)': 'sent_rows_per_s', 'stored (ClickHouse)': 'stored_rows_per_s' }), 'rows per second', 'Load: rows per second'),
      panel(
        long({ 'CSV_UPLOADS → ingest': 'lag_ingest', 'TELEMETRY → collect': 'lag_collect', 'ROLLUPS → collect': 'lag_rollups' }),
        'messages',
        'Consumer lag (what KEDA scales on)',
      ),
      {
        layer: [
          replicas,
          { data: { values: decisions }, mark: { type: 'rule', strokeDash: [3, 3], color: '#999' }, encoding: { x: { field: 't', type: 'quantitative' } } },
        ],
      },
    ],
    resolve: { scale: { color: 'independent' } },
    config: { font: 'sans-serif', legend: { orient: 'right', labelLimit: 300 } },
  };
  const compiled = vl.compile(spec as vl.TopLevelSpec).spec;
  return new vega.View(vega.parse(compiled), { renderer: 'none' }).toSVG();
}
