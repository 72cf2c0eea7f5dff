import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { ApiError, api } from './api.ts';
import { fmtNum } from './common.tsx';

// Pipeline: consumer lag per stream, parts waiting, rows stored per second, dead letters and —
// when the local autoscaler runs — replicas per function, polled every 2 s; the charts keep the
// history seen while the page is open (the last 30 minutes).

interface Pipeline {
  at: string;
  consumers: { stream: string; consumer: string; pending: number; ack_pending: number; redelivered: number }[];
  parts_waiting: number;
  dead_letters: { messages: number };
  rows_stored_per_second: number;
  rows_window_seconds: number;
  live_clients: number;
  autoscaler: { updated_at: string; functions: { function: string; replicas: number; lag: number | null; min: number; max: number }[] } | null;
}

const KEEP = 900;

function History(props: { title: string; labels: string[]; xs: number[]; ys: number[][] }) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728'];
  useEffect(() => {
    plot.current = new uPlot(
      {
        title: props.title,
        width: 560,
        height: 180,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
        series: [{}, ...props.labels.map((label, i) => ({ label, stroke: colors[i % colors.length], width: 1.5 }))],
      },
      [props.xs, ...props.ys],
      host.current!,
    );
    return () => plot.current?.destroy();
  }, [props.labels.join(',')]);
  useEffect(() => plot.current?.setData([props.xs, ...props.ys]), [props.xs, props.ys]);
  return <div class="chart" ref={host} />;
}

export function PipelinePage() {
  const [p, setP] = useState<Pipeline | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [hist, setHist] = useState<{ xs: number[]; lag: number[][]; replicas: number[][]; names: string[] }>({ xs: [], lag: [[], []], replicas: [], names: [] });

  useEffect(() => {
    let live = true;
    async function poll() {
      try {
        const s = await api<Pipeline>('/api/v1/pipeline');
        if (!live) return;
        setP(s);
        setError(null);
        setHist((h) => {
          const names = s.autoscaler?.functions.map((f) => f.function) ?? h.names;
          const xs = [...h.xs, Date.parse(s.at) / 1000].slice(-KEEP);
          const lag = s.consumers.map((c, i) => [...(h.lag[i] ?? []), c.pending + c.ack_pending].slice(-KEEP));
          const replicas = names.map((n, i) => [...(h.replicas[i] ?? new Array(h.xs.length).fill(null)), s.autoscaler?.functions.find((f) => f.function === n)?.replicas ?? null].slice(-KEEP) as number[]);
          return { xs, lag, replicas, names };
        });
      } catch (e) {
        if (live) setError(e instanceof ApiError && e.missingRoute ? 'not available on this server (no /api/v1/pipeline)' : (e as Error).message);
      }
    }
    void poll();
    const t = setInterval(poll, 2000);
    return () => {
      live = false;
      clearInterval(t);
    };
  }, []);

  return (
    <div>
      <h2>Pipeline</h2>
      {error && <p class="error">Pipeline: {error}</p>}
      {p && (
        <>
          <div class="tiles">
            <div class="tile"><span>parts waiting</span><b id="parts-waiting">{fmtNum(p.parts_waiting)}</b></div>
            <div class="tile"><span>rows stored/s ({p.rows_window_seconds}s)</span><b id="rows-per-second">{fmtNum(p.rows_stored_per_second)}</b></div>
            <div class="tile"><span>dead letters</span><b id="dead-letters" class={p.dead_letters.messages ? 'bad' : ''}>{fmtNum(p.dead_letters.messages)}</b></div>
            <div class="tile"><span>live clients</span><b>{p.live_clients}</b></div>
          </div>
          <table class="consumers">
            <thead><tr><th>stream</th><th>consumer</th><th>lag (pending)</th><th>in progress</th><th>redelivered</th></tr></thead>
            <tbody>
              {p.consumers.map((c) => (
                <tr data-stream={c.stream}><td>{c.stream}</td><td>{c.consumer}</td><td class="num">{fmtNum(c.pending)}</td><td class="num">{fmtNum(c.ack_pending)}</td><td class="num">{fmtNum(c.redelivered)}</td></tr>
              ))}
            </tbody>
          </table>
          <div class="grid2">
            <History title="Consumer lag" labels={p.consumers.map((c) => c.consumer)} xs={hist.xs} ys={hist.lag} />
            {p.autoscaler ? (
              <History title="Replicas (local autoscaler)" labels={hist.names} xs={hist.xs} ys={hist.replicas} />
            ) : (
              <p class="muted" id="no-autoscaler">Replicas: the local autoscaler is not running (start with <code>npm run dev -- --autoscale</code>; in a cluster see the HPA of each ScaledObject).</p>
            )}
          </div>
        </>
      )}
    </div>
  );
}
