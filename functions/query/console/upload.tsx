import { useRef, useState } from 'preact/hooks';
import { ApiError, api, authHeaders } from './api.ts';
import { fmtNum } from './common.tsx';
import { state } from './state.ts';

// Upload: a CSV or .csv.gz sent straight from the browser to the upload function (its origin
// comes from /api/v1/console/config; the upload function allows this origin by CORS). Progress
// from XMLHttpRequest upload events, then the status until done/failed, with reject reasons and
// links to the GPUs the file names (read from the file itself while it uploads).

interface Status {
  id: string;
  state: string;
  bytes: number;
  parts?: number;
  parts_ingested: number;
  rows_accepted: number;
  rows_rejected: number;
  rows_stored: number;
  error?: string;
  rejects: { line: number; reason: string }[];
}

const MAX_LINKS = 1000;

const unquote = (s: string) => s.trim().replace(/^"(.*)"$/, '$1');

/** Distinct GPU uuids named in the file (column `uuid`), read as a stream (gzip decoded). */
async function gpusIn(file: File): Promise<string[]> {
  let stream = file.stream() as ReadableStream<BufferSource>;
  if (/\.gz$/i.test(file.name)) stream = stream.pipeThrough(new DecompressionStream('gzip') as ReadableWritablePair<BufferSource, BufferSource>);
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  const found = new Set<string>();
  let col = -1;
  let rest = '';
  for (;;) {
    const { value, done } = await reader.read();
    const text = rest + (value ?? '');
    const lines = text.split('\n');
    rest = done ? '' : lines.pop()!;
    for (const line of lines) {
      if (col === -1) {
        col = line.trim().split(',').map(unquote).indexOf('uuid');
        if (col === -1) return [];
        continue;
      }
      const u = unquote(line.split(',', col + 1)[col] ?? '');
      if (u && /^GPU-[0-9a-f-]+$/i.test(u)) found.add(u);
      if (found.size >= MAX_LINKS) return [...found];
    }
    if (done) return [...found];
  }
}

function send(url: string, file: File, onProgress: (loaded: number, total: number) => void): Promise<Status> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `${url}/api/v1/uploads`);
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.setRequestHeader('content-type', 'text/csv');
    if (/\.gz$/i.test(file.name)) xhr.setRequestHeader('content-encoding', 'gzip');
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      let body: { error?: { code: string; message: string } } & Status;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        return reject(new Error(`upload answered HTTP ${xhr.status}`));
      }
      if (xhr.status >= 400) reject(new ApiError(xhr.status, body.error?.code ?? 'http_error', body.error?.message ?? `HTTP ${xhr.status}`, '/api/v1/uploads'));
      else resolve(body);
    };
    xhr.onerror = () => reject(new Error(`cannot reach the upload function at ${url}`));
    xhr.send(file);
  });
}

export function Upload(props: { uploadUrl: string | null }) {
  const [progress, setProgress] = useState<{ loaded: number; total: number } | null>(null);
  const [status, setStatus] = useState<Status | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [gpus, setGpus] = useState<string[]>([]);
  const [over, setOver] = useState(false);
  const input = useRef<HTMLInputElement>(null);

  if (!props.uploadUrl)
    return (
      <p class="unavailable">
        Uploads from the console are not available: this query function has no UPLOAD_PUBLIC_URL (use <code>npm run cli -- upload FILE</code>).
      </p>
    );
  const url = props.uploadUrl;

  async function start(file: File) {
    setError(null);
    setStatus(null);
    setGpus([]);
    state.upload = { state: 'sending', progress: [] };
    setProgress({ loaded: 0, total: file.size });
    void gpusIn(file).then(setGpus, () => setGpus([]));
    try {
      const accepted = await send(url, file, (loaded, total) => {
        state.upload.progress.push(loaded);
        setProgress({ loaded, total });
      });
      let s = accepted;
      for (;;) {
        s = await api<Status>(`/api/v1/uploads/${accepted.id}${'?reasons=50'}`, {}, url);
        setStatus(s);
        state.upload.state = s.state;
        if (s.state === 'done' || s.state === 'failed') break;
        await new Promise((r) => setTimeout(r, 500));
      }
    } catch (e) {
      state.upload.state = 'error';
      setError(e instanceof Error ? e.message : String(e));
    }
  }

  const pick = (files: FileList | null | undefined) => {
    const f = files?.[0];
    if (f) void start(f);
  };
  const pct = progress && progress.total ? Math.round((100 * progress.loaded) / progress.total) : 0;

  return (
    <div>
      <h2>Upload</h2>
      <div
        id="dropzone"
        class={over ? 'drop over' : 'drop'}
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => {
          e.preventDefault();
          setOver(false);
          pick(e.dataTransfer?.files);
        }}
        onClick={() => input.current?.click()}
      >
        Drop a DCGM CSV (or .csv.gz) here, or click to choose one.
        <input id="file" ref={input} type="file" accept=".csv,.gz,text/csv" hidden onChange={(e) => pick((e.target as HTMLInputElement).files)} />
      </div>
      {progress && (
        <p>
          <progress id="upload-progress" max={100} value={pct} /> {pct}% ({fmtNum(progress.loaded)} of {fmtNum(progress.total)} bytes)
        </p>
      )}
      {error && <p class="error">{error}</p>}
      {status && (
        <section class="card" id="upload-status" data-state={status.state}>
          <h3>
            Upload <code>{status.id}</code>: <span class={`state state-${status.state}`}>{status.state}</span>
          </h3>
          <p>
            parts {status.parts_ingested}/{status.parts ?? '?'} · accepted <b id="rows-accepted">{fmtNum(status.rows_accepted)}</b> · rejected{' '}
            <b id="rows-rejected">{fmtNum(status.rows_rejected)}</b> · stored <b id="rows-stored">{fmtNum(status.rows_stored)}</b>
          </p>
          {status.error && <p class="error">{status.error}</p>}
          {status.rejects.length > 0 && (
            <table class="rejects">
              <thead><tr><th>line</th><th>reason</th></tr></thead>
              <tbody>{status.rejects.map((r) => <tr><td class="num">{r.line}</td><td>{r.reason}</td></tr>)}</tbody>
            </table>
          )}
          {status.state === 'done' && gpus.length > 0 && (
            <details open={gpus.length <= 20}>
              <summary>{gpus.length} GPUs in this file</summary>
              <ul class="links">{gpus.map((u) => <li><a href={`#/gpu/${encodeURIComponent(u)}`}>{u}</a></li>)}</ul>
            </details>
          )}
        </section>
      )}
    </div>
  );
}
