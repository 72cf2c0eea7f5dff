import { useEffect, useState } from 'preact/hooks';
import type { GpuRow, HostRow } from '../rows.ts';
import { api, qs } from './api.ts';
import { Sparkline } from './chart.tsx';
import { FlagBadges, Show, fmtNum, fmtTime, useLoad } from './common.tsx';
import { state } from './state.ts';

// Fleet: the GPUs (paged by the API's cursor, filterable), hosts, and top-N views.

type Gpu = GpuRow & { flags: string[] };
interface GpuPage {
  gpus: Gpu[];
  next_cursor: string | null;
}
type Host = HostRow;
interface TopAnswer {
  metric: string;
  by: string;
  gpus: { uuid: string; hostname: string; model_name: string; value: number; count: number }[];
}
interface Anomalies {
  anomalies: { uuid: string; hostname: string; model_name: string; kind: string; first_seen: string; last_seen: string }[];
}

const PAGE = 100;
const UTIL = 'DCGM_FI_DEV_GPU_UTIL';
const MAX_HOST_PAGES = 20;

async function allHosts(): Promise<Host[]> {
  const hosts: Host[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < MAX_HOST_PAGES; i++) {
    const page: { hosts: Host[]; next_cursor: string | null } = await api(`/api/v1/hosts${qs({ limit: 1000, cursor })}`);
    hosts.push(...page.hosts);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return hosts;
}

// Sparklines load a few at a time, after the table, so 100 of them never hold up the page.
const SPARK_CONCURRENCY = 4;
let sparkRunning = 0;
const sparkQueue: (() => void)[] = [];
async function limited<T>(work: () => Promise<T>): Promise<T> {
  if (sparkRunning >= SPARK_CONCURRENCY) await new Promise<void>((r) => sparkQueue.push(r));
  sparkRunning++;
  try {
    return await work();
  } finally {
    sparkRunning--;
    sparkQueue.shift()?.();
  }
}

function UtilSpark(props: { gpu: Gpu }) {
  const [cols, setCols] = useState<{ xs: number[]; ys: number[] } | null>(null);
  useEffect(() => {
    if (!props.gpu.metrics.includes(UTIL)) return;
    let live = true;
    limited(() =>
      live
        ? api<{ series: { points: { t: string; avg: number }[] }[] }>(`/api/v1/gpus/${encodeURIComponent(props.gpu.uuid)}/series${qs({ metric: UTIL, max_points: 40 })}`)
        : Promise.resolve({ series: [] }),
    )
      .then((s) => {
        const pts = s.series[0]?.points ?? [];
        if (live) setCols({ xs: pts.map((p) => Date.parse(p.t) / 1000), ys: pts.map((p) => p.avg) });
      })
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [props.gpu.uuid]);
  if (!cols) return <span class="muted">–</span>;
  if (cols.xs.length < 2) return <span title="utilisation">{cols.ys[0] ?? '–'}%</span>;
  return <Sparkline xs={cols.xs} values={cols.ys} />;
}

function Top(props: { title: string; path: string }) {
  const [top] = useLoad(() => api<TopAnswer>(props.path), [props.path]);
  return (
    <section class="card">
      <h3>{props.title}</h3>
      <Show value={top} what={props.title}>
        {(t) => (
          <ol class="top">
            {t.gpus.map((g) => (
              <li>
                <a href={`#/gpu/${encodeURIComponent(g.uuid)}`}>{g.hostname}</a> <span class="muted">{g.uuid.slice(0, 12)}…</span> <b>{Number(g.value.toPrecision(4))}</b>
              </li>
            ))}
            {t.gpus.length === 0 && <li class="muted">no data</li>}
          </ol>
        )}
      </Show>
    </section>
  );
}

function IdleAllocated() {
  const [a] = useLoad(() => api<Anomalies>(`/api/v1/anomalies${qs({ kind: 'idle_allocated', limit: 10 })}`), []);
  return (
    <section class="card">
      <h3>Idle but allocated</h3>
      <Show value={a} what="Idle-allocated GPUs">
        {(d) => (
          <ol class="top">
            {d.anomalies.map((g) => (
              <li>
                <a href={`#/gpu/${encodeURIComponent(g.uuid)}`}>{g.hostname}</a> <span class="muted">{g.uuid.slice(0, 12)}…</span>
              </li>
            ))}
            {d.anomalies.length === 0 && <li class="muted">none</li>}
          </ol>
        )}
      </Show>
    </section>
  );
}

export function Fleet() {
  const [filters, setFilters] = useState({ hostname: '', model_name: '', uuid_prefix: '', flag: '' });
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1];
  const t0 = performance.now();
  const [page] = useLoad(
    () => api<GpuPage>(`/api/v1/gpus${qs({ limit: PAGE, cursor, hostname: filters.hostname, model_name: filters.model_name, uuid_prefix: filters.uuid_prefix })}`),
    [cursor, filters.hostname, filters.model_name, filters.uuid_prefix],
  );
  const [hosts] = useLoad(allHosts, []);
  useEffect(() => {
    if (hosts.status === 'ok') state.fleet.gpus = hosts.data.reduce((n, h) => n + h.gpus, 0);
  }, [hosts]);
  useEffect(() => {
    if (page.status === 'ok') {
      state.fleet.rows = page.data.gpus.length;
      state.fleet.loadMs ??= performance.now() - t0;
    }
  }, [page]);

  const set = (k: keyof typeof filters) => (e: Event) => {
    setFilters({ ...filters, [k]: (e.target as HTMLInputElement).value.trim() });
    setCursors([null]);
  };
  const totalGpus = hosts.status === 'ok' ? hosts.data.reduce((n, h) => n + h.gpus, 0) : null;

  return (
    <div>
      <h2>
        Fleet{' '}
        {totalGpus !== null && hosts.status === 'ok' && (
          <span class="muted" id="fleet-total">
            <b data-gpus={totalGpus}>{fmtNum(totalGpus)}</b> GPUs on {fmtNum(hosts.data.length)} hosts
          </span>
        )}
      </h2>
      <div class="grid3">
        <Top title="Hottest (max °C)" path={`/api/v1/metrics/DCGM_FI_DEV_GPU_TEMP/top${qs({ by: 'max', limit: 10 })}`} />
        <Top title="Busiest (avg util %)" path={`/api/v1/metrics/${UTIL}/top${qs({ by: 'avg', limit: 10 })}`} />
        <IdleAllocated />
      </div>
      <section class="card">
        <h3>GPUs</h3>
        <form class="filters" onSubmit={(e) => e.preventDefault()}>
          <input name="hostname" placeholder="host" onChange={set('hostname')} />
          <input name="model_name" placeholder="model" onChange={set('model_name')} />
          <input name="uuid_prefix" placeholder="uuid prefix" onChange={set('uuid_prefix')} />
          <input name="flag" placeholder="flag (this page)" onInput={set('flag')} />
        </form>
        <Show value={page} what="GPUs">
          {(p) => {
            const rows = filters.flag ? p.gpus.filter((g) => g.flags.some((f) => f.includes(filters.flag))) : p.gpus;
            return (
              <>
                <table class="gpus">
                  <thead>
                    <tr>
                      <th>uuid</th><th>host</th><th>gpu</th><th>model</th><th>flags</th><th>utilisation</th><th>samples</th><th>last seen</th>
                    </tr>
                  </thead>
                  <tbody>
                    {rows.map((g) => (
                      <tr data-uuid={g.uuid}>
                        <td><a href={`#/gpu/${encodeURIComponent(g.uuid)}`}>{g.uuid}</a></td>
                        <td>{g.hostname}</td>
                        <td>{g.device}</td>
                        <td>{g.model_name}</td>
                        <td><FlagBadges flags={g.flags} /></td>
                        <td><UtilSpark gpu={g} /></td>
                        <td class="num">{fmtNum(g.samples)}</td>
                        <td>{fmtTime(g.last_seen)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
                <div class="pager">
                  <button disabled={cursors.length === 1} onClick={() => setCursors(cursors.slice(0, -1))}>← previous</button>
                  <span class="muted">page {cursors.length}</span>
                  <button id="next-page" disabled={!p.next_cursor} onClick={() => setCursors([...cursors, p.next_cursor])}>next →</button>
                </div>
              </>
            );
          }}
        </Show>
      </section>
      <section class="card">
        <h3>Hosts</h3>
        <Show value={hosts} what="Hosts">
          {(hs) => (
            <table class="hosts">
              <thead><tr><th>host</th><th>GPUs</th><th>models</th><th>first seen</th><th>last seen</th></tr></thead>
              <tbody>
                {hs.slice(0, 200).map((h) => (
                  <tr>
                    <td>{h.hostname}</td><td class="num">{h.gpus}</td><td>{h.models.join(', ')}</td><td>{fmtTime(h.first_seen)}</td><td>{fmtTime(h.last_seen)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Show>
      </section>
    </div>
  );
}
