import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, qs, sse } from './api.ts';
import { Chart, toColumns, type Columns, type Point } from './chart.tsx';
import { Show, fmtTime, useLoad } from './common.tsx';
import { state } from './state.ts';

// GPU: one chart per metric from the series route (max_points = chart width in pixels, so the
// server picks the step), range presets, the data's own range, drag to zoom (refetch at a finer
// step) with the raw rows of the selected window, and live points appended from the SSE route.

interface Summary {
  uuid: string;
  metrics: { metric_name: string; count: number; first_timestamp: string; last_timestamp: string }[];
}
interface Series {
  start_time: string;
  end_time: string;
  step: string;
  source: string;
  series: { metric: string; points: Point[] }[];
}
interface Telemetry {
  data: { timestamp: string; metric_name: string; value: number; hostname: string; pod: string; namespace: string }[];
  next_cursor: string | null;
}

const PRESETS: [string, number][] = [
  ['15m', 15 * 60_000],
  ['1h', 3_600_000],
  ['6h', 6 * 3_600_000],
  ['24h', 86_400_000],
  ['7d', 7 * 86_400_000],
  ['30d', 30 * 86_400_000],
];

const chartWidth = () => Math.max(320, Math.min(1400, document.documentElement.clientWidth - 64));

export function GpuPage(props: { uuid: string }) {
  const uuid = props.uuid;
  const [summary] = useLoad(() => api<Summary>(`/api/v1/gpus/${encodeURIComponent(uuid)}/summary`), [uuid]);
  const [range, setRange] = useState<{ label: string; start: number; end: number } | null>(null);
  const [data, setData] = useState<Record<string, Columns>>({});
  const [meta, setMeta] = useState<{ step: string; source: string } | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [rows, setRows] = useState<Telemetry | null>(null);
  const [liveState, setLiveState] = useState('connecting');
  const [width, setWidth] = useState(chartWidth());

  useEffect(() => {
    const onResize = () => setWidth(chartWidth());
    addEventListener('resize', onResize);
    return () => removeEventListener('resize', onResize);
  }, []);

  const dataRange = useMemo(() => {
    if (summary.status !== 'ok' || summary.data.metrics.length === 0) return null;
    const first = Math.min(...summary.data.metrics.map((m) => Date.parse(m.first_timestamp)));
    const last = Math.max(...summary.data.metrics.map((m) => Date.parse(m.last_timestamp)));
    // A single instant still gets a visible window around it.
    return { start: first - 30_000, end: last + 30_000 };
  }, [summary]);
  const metrics = summary.status === 'ok' ? summary.data.metrics.map((m) => m.metric_name) : [];

  // Default range: recent data → last hour; a historical import → its own range.
  useEffect(() => {
    if (range || !dataRange) return;
    if (Date.now() - dataRange.end < 15 * 60_000) setRange({ label: '1h', start: Date.now() - 3_600_000, end: Date.now() });
    else setRange({ label: 'data', ...dataRange });
  }, [dataRange]);

  useEffect(() => {
    if (!range || metrics.length === 0) return;
    let live = true;
    setProblem(null);
    api<Series>(
      `/api/v1/gpus/${encodeURIComponent(uuid)}/series${qs({
        metric: metrics,
        start_time: new Date(range.start).toISOString(),
        end_time: new Date(range.end).toISOString(),
        max_points: Math.min(10_000, width),
      })}`,
    ).then(
      (s) => {
        if (!live) return;
        const next: Record<string, Columns> = {};
        for (const m of metrics) next[m] = toColumns(s.series.find((x) => x.metric === m)?.points ?? []);
        setData(next);
        setMeta({ step: s.step, source: s.source });
      },
      (e: Error & { missingRoute?: boolean }) => live && setProblem(e.missingRoute ? 'unavailable' : e.message),
    );
    return () => {
      live = false;
    };
  }, [range?.start, range?.end, metrics.join(','), width]);

  // Live points: appended to the charts as they are stored.
  useEffect(() => {
    const ac = new AbortController();
    state.live = { events: 0, samples: 0, state: 'connecting' };
    void sse(
      `/api/v1/gpus/${encodeURIComponent(uuid)}/live`,
      (ev) => {
        if (ev.event !== 'samples') return;
        const { samples } = JSON.parse(ev.data) as { samples: { metric_name: string; timestamp: string; value: number }[] };
        state.live.events++;
        state.live.samples += samples.length;
        setData((old) => {
          const next = { ...old };
          for (const s of samples) {
            const cols = next[s.metric_name] ?? [[], [], [], []];
            const x = Date.parse(s.timestamp) / 1000;
            const i = cols[0].findLastIndex((v) => v <= x);
            const copy = cols.map((c) => c.slice()) as Columns;
            copy[0].splice(i + 1, 0, x);
            for (const k of [1, 2, 3] as const) copy[k].splice(i + 1, 0, s.value);
            next[s.metric_name] = copy;
          }
          return next;
        });
      },
      ac.signal,
      (s) => {
        state.live.state = s;
        setLiveState(s);
      },
    );
    return () => ac.abort();
  }, [uuid]);

  async function select(start: number, end: number) {
    setRange({ label: 'zoom', start, end });
    setRows(null);
    setRows(await api<Telemetry>(`/api/v1/gpus/${encodeURIComponent(uuid)}/telemetry${qs({ start_time: new Date(start).toISOString(), end_time: new Date(end).toISOString(), limit: 200 })}`));
  }

  return (
    <div>
      <h2>
        GPU <code>{uuid}</code>
      </h2>
      <Show value={summary} what="GPU">
        {(s) => (
          <>
            <div class="toolbar">
              {PRESETS.map(([label, ms]) => (
                <button class={range?.label === label ? 'on' : ''} onClick={() => setRange({ label, start: Date.now() - ms, end: Date.now() })}>
                  {label}
                </button>
              ))}
              {dataRange && (
                <button id="range-data" class={range?.label === 'data' ? 'on' : ''} onClick={() => setRange({ label: 'data', ...dataRange })}>
                  data range
                </button>
              )}
              <span class="muted">
                {range && `${fmtTime(new Date(range.start).toISOString())} → ${fmtTime(new Date(range.end).toISOString())}`}
                {meta && ` · step ${meta.step} from ${meta.source}`} · live: <span id="live-state">{liveState}</span>
              </span>
            </div>
            {s.metrics.length === 0 && <p class="muted">No samples stored for this GPU.</p>}
            {problem === 'unavailable' && <p class="unavailable" data-unavailable="/api/v1/gpus/{uuid}/series">Charts: not available on this server (the series route is not served by this query function version).</p>}
            {problem && problem !== 'unavailable' && <p class="error">{problem}</p>}
            {!problem &&
              metrics.map((m) => (data[m] ? <Chart id={m} title={m} data={data[m]} width={width} range={range ?? undefined} onSelect={(a, b) => void select(a, b)} /> : null))}
            {rows && (
              <section class="card">
                <h3>Raw rows of the selected window ({rows.data.length}{rows.next_cursor ? '+, first 200' : ''})</h3>
                <table class="raw">
                  <thead><tr><th>timestamp</th><th>metric</th><th>value</th><th>pod</th><th>namespace</th></tr></thead>
                  <tbody>
                    {rows.data.map((r) => (
                      <tr><td>{fmtTime(r.timestamp)}</td><td>{r.metric_name}</td><td class="num">{r.value}</td><td>{r.pod}</td><td>{r.namespace}</td></tr>
                    ))}
                  </tbody>
                </table>
              </section>
            )}
          </>
        )}
      </Show>
    </div>
  );
}
