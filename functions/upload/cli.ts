import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';
import { Readable } from 'node:stream';

// Client side of the upload function: streams a file to POST /api/v1/uploads with a progress
// line, then (with wait) polls the status until the upload is done or failed.

export interface UploadCliOptions {
  url: string;
  token?: string;
  wait?: boolean;
  restamp?: boolean;
  /** Idempotency-Key: running the same upload again with it resumes or replays, never duplicates. */
  key?: string;
  /** Where progress goes (a TTY gets one rewritten line, anything else one line per step). */
  out?: NodeJS.WriteStream;
  pollMs?: number;
  timeoutMs?: number;
}

export interface UploadStatusBody {
  id: string;
  state: string;
  rows_accepted: number;
  rows_rejected: number;
  rows_stored: number;
  rejects: { line: number; reason: string }[];
  error?: string;
  [k: string]: unknown;
}

const mb = (n: number) => (n / 1024 / 1024).toFixed(1);

export async function uploadFile(file: string, opts: UploadCliOptions): Promise<UploadStatusBody> {
  const out = opts.out ?? process.stderr;
  const tty = out.isTTY;
  const say = (line: string, final = false) => {
    if (tty) out.write(`\r\x1b[2K${line}${final ? '\n' : ''}`);
    else out.write(`${line}\n`);
  };
  const size = statSync(file).size;
  const headers: Record<string, string> = { 'content-type': 'text/csv', 'content-length': String(size), 'x-filename': basename(file) };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.key) headers['idempotency-key'] = opts.key;
  let sent = 0;
  let lastShown = 0;
  const started = Date.now();
  const body = Readable.from(
    (async function* () {
      for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) {
        sent += chunk.length;
        if (Date.now() - lastShown > (tty ? 200 : 2000) || sent === size) {
          lastShown = Date.now();
          say(`uploading ${basename(file)}: ${mb(sent)}/${mb(size)} MiB (${Math.round((sent / Math.max(size, 1)) * 100)}%)`);
        }
        yield chunk;
      }
    })(),
  );
  const base = opts.url.replace(/\/$/, '');
  const query = opts.restamp ? '?timestamps=processing' : '';
  const res = await fetch(`${base}/api/v1/uploads${query}`, {
    method: 'POST',
    headers,
    body: Readable.toWeb(body) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  const answer = (await res.json().catch(() => ({}))) as { id?: string; status_url?: string; error?: { message: string } };
  if (res.status !== 202 || !answer.id) throw new Error(`upload rejected (${res.status}): ${answer.error?.message ?? JSON.stringify(answer)}`);
  say(`uploaded ${mb(size)} MiB in ${((Date.now() - started) / 1000).toFixed(1)} s — upload id ${answer.id}`, true);
  const statusUrl = `${base}${answer.status_url}`;
  const auth: Record<string, string> = opts.token ? { authorization: `Bearer ${opts.token}` } : {};
  const readStatus = async (): Promise<UploadStatusBody> => {
    const r = await fetch(statusUrl, { headers: auth });
    const body = (await r.json()) as UploadStatusBody & { error?: { message: string } };
    if (!r.ok) throw new Error(`status of upload ${answer.id} (${r.status}): ${body.error?.message ?? JSON.stringify(body)}`);
    return body;
  };
  let status = await readStatus();
  if (!opts.wait) return status;
  const deadline = Date.now() + (opts.timeoutMs ?? 3_600_000);
  while (status.state !== 'done' && status.state !== 'failed') {
    if (Date.now() > deadline) throw new Error(`gave up waiting for upload ${answer.id} (state ${status.state})`);
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 500));
    status = await readStatus();
    say(`${status.state}: ${status.rows_stored.toLocaleString()} of ${status.rows_accepted.toLocaleString()} accepted rows stored, ${status.rows_rejected.toLocaleString()} rejected`);
  }
  say(`${status.state}: ${status.rows_stored.toLocaleString()} rows stored, ${status.rows_rejected.toLocaleString()} rejected (${((Date.now() - started) / 1000).toFixed(1)} s)`, true);
  for (const r of status.rejects.slice(0, 10)) out.write(`  line ${r.line}: ${r.reason}\n`);
  if (status.error) out.write(`  error: ${status.error}\n`);
  return status;
}
