import { createReadStream, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { basename } from 'node:path';
import { pipeline } from 'node:stream/promises';

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

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
};

/**
 * POSTs the file as the body (node:http, piped from the file): resolves with the answer, also one
 * given before the body was sent whole (e.g. 413). Why not fetch: its web-stream body cost the
 * client ≈ 2.8 CPU-s per 510 MiB against 0.4–1.0 (scratch client and sink, 2026-11-23); in `npm run
 * bench` the CLI shares the machine's two cores with the pipeline it measures.
 */
function postFile(url: URL, headers: Record<string, string>, file: string, onBytes: (n: number) => void): Promise<{ status: number; text: string }> {
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request(url, { method: 'POST', headers }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      let ended = false;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        ended = true;
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('close', () => ended || reject(new Error(`the upload's answer (${res.statusCode}) was cut off`)));
    });
    const body = createReadStream(file, { highWaterMark: 1024 * 1024 });
    body.on('data', (c) => onBytes(c.length));
    // Sending fails once the server has answered early and closed: the answer is what counts.
    pipeline(body, req).catch((e: unknown) => answered || reject(e));
  });
}

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
  const progress = (bytes: number) => {
    sent += bytes;
    if (Date.now() - lastShown > (tty ? 200 : 2000) || sent === size) {
      lastShown = Date.now();
      say(`uploading ${basename(file)}: ${mb(sent)}/${mb(size)} MiB (${Math.round((sent / Math.max(size, 1)) * 100)}%)`);
    }
  };
  const base = opts.url.replace(/\/$/, '');
  const query = opts.restamp ? '?timestamps=processing' : '';
  const res = await postFile(new URL(`${base}/api/v1/uploads${query}`), headers, file, progress);
  const answer = parseJson(res.text) as { id?: string; status_url?: string; error?: { message: string } };
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
