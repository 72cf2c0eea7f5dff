import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { state } from './state.ts';

// One uPlot chart: avg as the line, min..max as a band, hover legend with time/min/avg/max.
// Dragging selects a window: the page refetches it at a finer step (zoom) and lists its raw rows.

export interface Point {
  t: string;
  count: number;
  min: number;
  max: number;
  avg: number;
  last: number;
}

export type Columns = [number[], (number | null)[], (number | null)[], (number | null)[]];

export function toColumns(points: Point[]): Columns {
  const xs: number[] = new Array(points.length);
  const avg: number[] = new Array(points.length);
  const min: number[] = new Array(points.length);
  const max: number[] = new Array(points.length);
  points.forEach((p, i) => {
    xs[i] = Date.parse(p.t) / 1000;
    avg[i] = p.avg;
    min[i] = p.min;
    max[i] = p.max;
  });
  return [xs, avg, min, max];
}

const compact = (v: number) => (Math.abs(v) >= 1e6 ? `${Number((v / 1e6).toPrecision(3))}M` : Math.abs(v) >= 1e4 ? `${Number((v / 1e3).toPrecision(3))}k` : String(Number(v.toPrecision(4))));
const fmt = (v: number | null | undefined) => (v === null || v === undefined ? '–' : Math.abs(v) >= 1000 ? v.toFixed(0) : Number(v.toPrecision(4)).toString());

export function Chart(props: {
  id: string;
  title: string;
  data: Columns;
  width: number;
  height?: number;
  /** The requested window (ms): the x axis shows it whole, even with one point or none. */
  range?: { start: number; end: number };
  onSelect?: (startMs: number, endMs: number) => void;
}) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const onSelect = useRef(props.onSelect);
  onSelect.current = props.onSelect;
  const range = useRef(props.range);
  range.current = props.range;

  useEffect(() => {
    const opts: uPlot.Options = {
      title: props.title,
      width: props.width,
      height: props.height ?? 200,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      cursor: { drag: { x: true, y: false, setScale: false } },
      scales: {
        x: { time: true, range: (_u, min, max) => (range.current ? [range.current.start / 1000, range.current.end / 1000] : [min, max]) },
      },
      axes: [{}, { size: 64, values: (_u, vals) => vals.map(compact) }],
      series: [
        { label: 'time (UTC)', value: (_u, v) => (v === null ? '–' : new Date(v * 1000).toISOString().replace('T', ' ').replace('Z', '')) },
        { label: 'avg', stroke: '#1f77b4', width: 1.5, value: (_u, v) => fmt(v), points: { show: (u) => u.data[0].length < 60 } },
        { label: 'min', stroke: '#9ecae1', width: 1, value: (_u, v) => fmt(v) },
        { label: 'max', stroke: '#fc9272', width: 1, value: (_u, v) => fmt(v) },
      ],
      bands: [{ series: [3, 2], fill: 'rgba(31,119,180,0.10)' }],
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width < 3) return;
            const a = u.posToVal(u.select.left, 'x');
            const b = u.posToVal(u.select.left + u.select.width, 'x');
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            onSelect.current?.(Math.floor(a * 1000), Math.ceil(b * 1000));
          },
        ],
      },
    };
    const t0 = performance.now();
    plot.current = new uPlot(opts, props.data as uPlot.AlignedData, host.current!);
    state.charts[props.id] = { plot: plot.current, renderMs: performance.now() - t0 };
    return () => {
      plot.current?.destroy();
      delete state.charts[props.id];
      plot.current = null;
    };
  }, [props.id, props.title]);

  useEffect(() => {
    if (!plot.current) return;
    const t0 = performance.now();
    plot.current.setData(props.data as uPlot.AlignedData);
    state.charts[props.id] = { plot: plot.current, renderMs: performance.now() - t0 };
  }, [props.data]);

  useEffect(() => {
    plot.current?.setSize({ width: props.width, height: props.height ?? 200 });
  }, [props.width, props.height]);

  return <div class="chart" ref={host} data-metric={props.id} />;
}

/** A sparkline: a tiny uPlot without axes or legend. */
export function Sparkline(props: { values: number[]; xs: number[]; width?: number }) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (props.xs.length === 0) return;
    const u = new uPlot(
      {
        width: props.width ?? 120,
        height: 28,
        legend: { show: false },
        cursor: { show: false },
        axes: [{ show: false }, { show: false }],
        scales: { x: { time: false }, y: { range: [0, 100] } },
        series: [{}, { stroke: '#1f77b4', width: 1, fill: 'rgba(31,119,180,0.15)' }],
      },
      [props.xs, props.values],
      host.current!,
    );
    return () => u.destroy();
  }, [props.values, props.xs]);
  return <div class="spark" ref={host} />;
}
