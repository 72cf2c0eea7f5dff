import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { provisionAll } from '../../shared/provision-main.ts';
import { WaitAborted, freePort, waitFor } from '../support/ports.ts';
import { startClickHouse, startNats, type NatsServer, type RunningServer } from '../support/servers.ts';
import { SupervisedProcess } from './supervisor.ts';


// The local stack: a real nats-server (JetStream) and the ClickHouse engine from chdb, provisioned
// like the cluster's Job does, plus the functions as separate processes, exactly as they run in
// production (HTTP servers and JetStream pull workers). Used by `npm run demo`/`dev`, the
// end-to-end tests and the benchmark.

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export type FunctionName = 'upload' | 'query' | 'remote-write' | 'ingest' | 'collect';
type HttpFunction = 'upload' | 'query' | 'remote-write';

const ENTRIES: Record<FunctionName, { ts: string; js: string }> = {
  upload: { ts: 'functions/upload/main.ts', js: 'dist/upload.js' },
  query: { ts: 'functions/query/main.ts', js: 'dist/query.js' },
  'remote-write': { ts: 'functions/remote-write/main.ts', js: 'dist/remote-write.js' },
  ingest: { ts: 'functions/ingest/worker.ts', js: 'dist/ingest-worker.js' },
  collect: { ts: 'functions/collect/worker.ts', js: 'dist/collect-worker.js' },
};

/** The function a bundle (`dist/<entry>.js`) runs, if it is one the stack starts. */
export const functionOfBundle = (js: string): FunctionName | undefined =>
  (Object.keys(ENTRIES) as FunctionName[]).find((name) => ENTRIES[name].js === js);

export interface StackOptions {
  /** Where NATS and ClickHouse keep data; a temp dir (removed on stop) when omitted. */
  dataDir?: string;
  ingestWorkers?: number;
  collectWorkers?: number;
  /** Run the esbuild bundles from dist/ instead of the TypeScript sources. */
  useBundles?: boolean;
  /** Extra environment for every function process. */
  env?: Record<string, string>;
  /** Fixed ports for upload/query/remote-write (dev mode); free ports when omitted. */
  uploadPort?: number;
  queryPort?: number;
  remoteWritePort?: number;
  /** HTTP functions to start (default upload and query; remote-write is opt-in). */
  httpFunctions?: HttpFunction[];
  /** Print function output with a `[name]` prefix (default: only errors are kept). */
  verbose?: boolean;
  /**
   * Restart a function process that exits unasked, with back-off, like a Deployment
   * (`npm run dev`/`scale`). Off by default: a test that kills a process wants it to stay dead.
   */
  supervise?: boolean;
  /** Interface the HTTP functions bind (HTTP_HOST): loopback unless asked (`--expose`). */
  host?: string;
  /** ClickHouse keeps its query, view and part logs (ClickHouseOptions.logs). */
  clickhouseLogs?: boolean;
}

export interface FunctionProcess {
  name: string;
  /** The current OS process (a new one after each restart). */
  readonly process: ChildProcess;
  /** Restarts after unasked-for exits (supervised stacks only). */
  readonly restarts: number;
  /** Last 200 lines of output, supervisor lines included. */
  output: string[];
  /** SIGTERM (drain), SIGKILL after graceMs; no restart. */
  stop(graceMs?: number): Promise<void>;
}

export interface Stack {
  nats: NatsServer;
  clickhouse: RunningServer;
  uploadUrl: string;
  queryUrl: string;
  /** Base URL of the remote-write function (its endpoint is `${remoteWriteUrl}/api/v1/write`). */
  remoteWriteUrl: string;
  /** Environment a function process of this stack gets (NATS/ClickHouse URLs, settings). */
  env: Record<string, string>;
  processes: FunctionProcess[];
  startFunction(name: FunctionName, extraEnv?: Record<string, string>): FunctionProcess;
  stopFunction(p: FunctionProcess): Promise<void>;
  stop(opts?: { keepData?: boolean }): Promise<void>;
}

/** Starts a worker process of the stack and waits until it logs that its pull loop runs. */
export async function startWorker(stack: Stack, name: 'ingest' | 'collect', extraEnv: Record<string, string> = {}): Promise<FunctionProcess> {
  const w = stack.startFunction(name, extraEnv);
  await waitFor(async () => {
    if (w.process.exitCode !== null) throw new WaitAborted(`${name} exited:\n${w.output.join('\n')}`);
    return w.output.some((l) => l.includes('"msg":"worker started"'));
  }, `${name} worker start`, 60_000, 50);
  return w;
}

/**
 * Memory settings of the function processes, as the images and manifests set them: for the
 * functions that stream file bytes (upload, ingest, collect; their `command` in knative/ and
 * keda/) a young generation of at most 1 MiB per semi-space (V8 grew it to 16 MiB per semi-space
 * under a byte stream, +25 MiB of heap; no CPU cost measured, `npm run bench`); not for query and
 * remote-write, whose many short-lived objects it made collect ≈ 3× as often (query: 7.3 s of GC
 * against 2.5 s over the same bench:query run). For every function glibc's mmap threshold is
 * fixed at 128 KiB (freed Buffers of 128 KiB or more go back to the OS at once instead of staying
 * in malloc's heap). The same functions cap V8's old generation at 256 MiB (half their pods'
 * 512 Mi limit; their live heap is ≈ 20 MiB): with no cap, V8 sizes its limits for this machine's
 * memory and let collect's old space fill with garbage for a whole upload (one full collection in
 * a 1 GiB upload, peak 94 MiB at 1.9 GiB against 81 with the cap; upload 137 against 112): under
 * 256 MiB it grows the heap by a smaller factor and collects as it goes. `npm run bench:memory`.
 */
const BYTE_STREAM_NODE_FLAGS = ['--max-semi-space-size=1', '--max-old-space-size=256'];
/**
 * The upload also grows V8's heap limit by 2× after a full collection. V8 counts the ArrayBuffers
 * allocated since the last full collection against the old generation's limit, and the request
 * body arrives as a new 64 KiB buffer per socket read: ≈ 8 MiB of them between two scavenges,
 * nearly all of the ≈ 9 MiB V8 leaves above the upload's 12 MiB heap, so marking started again
 * and again (`--trace-gc --trace-incremental-marking`: 40 full collections freeing ≈ 1 MiB each
 * per 428 MiB upload, ≈ 0.8 CPU-s). With 2×: 12 of them; upload 3.86, 4.01, 4.96 → 2.98, 3.26,
 * 3.72 µs/row (`npm run bench`, alternated), peak RSS unchanged (`npm run bench:memory`: 111 MiB
 * at 1 GiB either way; 3× made it 122).
 */
const UPLOAD_NODE_FLAGS = [...BYTE_STREAM_NODE_FLAGS, '--heap-growing-percent=100'];
export const functionNodeFlags = (name: FunctionName) =>
  name === 'upload' ? UPLOAD_NODE_FLAGS : name === 'ingest' || name === 'collect' ? BYTE_STREAM_NODE_FLAGS : [];
export const FUNCTION_MALLOC_ENV = { MALLOC_MMAP_THRESHOLD_: '131072' };

export function functionCommand(name: FunctionName, useBundles = false): string[] {
  const entry = ENTRIES[name];
  // GPUTEL_CPU_PROF=DIR: each bundled function writes a V8 CPU profile there when it exits.
  const prof = process.env.GPUTEL_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir=' + process.env.GPUTEL_CPU_PROF] : [];
  return [...functionNodeFlags(name), ...(useBundles ? [...prof, join(repoRoot, entry.js)] : ['--import', 'tsx', join(repoRoot, entry.ts)])];
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const natsDir = opts.dataDir ? join(opts.dataDir, 'nats') : undefined;
  const chDir = opts.dataDir ? join(opts.dataDir, 'clickhouse') : undefined;
  if (opts.dataDir) mkdirSync(opts.dataDir, { recursive: true });
  const [natsResult, chResult] = await Promise.allSettled([startNats({ dataDir: natsDir }), startClickHouse({ dataDir: chDir, logs: opts.clickhouseLogs })]);
  if (natsResult.status === 'rejected' || chResult.status === 'rejected') {
    // Do not leave the one that did start running.
    await Promise.all([natsResult, chResult].map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    throw natsResult.status === 'rejected' ? natsResult.reason : (chResult as PromiseRejectedResult).reason;
  }
  const nats = natsResult.value;
  const clickhouse = chResult.value;
  const uploadPort = opts.uploadPort ?? (await freePort());
  const queryPort = opts.queryPort ?? (await freePort());
  const remoteWritePort = opts.remoteWritePort ?? (await freePort());
  const env: Record<string, string> = {
    NATS_URL: nats.url,
    CLICKHOUSE_URL: clickhouse.url,
    CLICKHOUSE_DATABASE: 'telemetry',
    WORKER_HTTP_PORT: '0',
    ...FUNCTION_MALLOC_ENV,
    // One key per stack: query's cursors stay valid when its process is restarted.
    CURSOR_SECRET: randomBytes(32).toString('base64url'),
    HTTP_HOST: opts.host ?? '127.0.0.1',
    ...opts.env,
  };
  const processes: FunctionProcess[] = [];
  const counters = new Map<string, number>();

  function startFunction(name: FunctionName, extraEnv: Record<string, string> = {}): FunctionProcess {
    const n = (counters.get(name) ?? 0) + 1;
    counters.set(name, n);
    const label = `${name}#${n}`;
    const output: string[] = [];
    const sup = new SupervisedProcess({
      args: functionCommand(name, opts.useBundles),
      cwd: repoRoot,
      env: { ...process.env, ...env, ...extraEnv },
      restart: opts.supervise ?? false,
      output: (line) => {
        output.push(line);
        if (output.length > 200) output.shift();
        if (opts.verbose) console.log(`[${label}] ${line}`);
      },
    });
    const fp: FunctionProcess = {
      name: label,
      output,
      get process() {
        return sup.proc;
      },
      get restarts() {
        return sup.restarts;
      },
      stop: (graceMs = 30_000) => sup.stop(graceMs),
    };
    processes.push(fp);
    return fp;
  }

  async function stopFunction(p: FunctionProcess): Promise<void> {
    await p.stop();
    processes.splice(processes.indexOf(p), 1);
  }

  const stack: Stack = {
    nats,
    clickhouse,
    uploadUrl: `http://127.0.0.1:${uploadPort}`,
    queryUrl: `http://127.0.0.1:${queryPort}`,
    remoteWriteUrl: `http://127.0.0.1:${remoteWritePort}`,
    env,
    processes,
    startFunction,
    stopFunction,
    async stop(stopOpts = {}) {
      await Promise.all([...processes].map((p) => p.stop()));
      await Promise.all([stack.nats.stop(stopOpts), stack.clickhouse.stop(stopOpts)]);
    },
  };
  try {
    await provisionAll({ ...process.env, ...env });
    const http = opts.httpFunctions ?? ['upload', 'query'];
    if (http.includes('upload')) startFunction('upload', { PORT: String(uploadPort) });
    if (http.includes('query')) startFunction('query', { PORT: String(queryPort) });
    if (http.includes('remote-write')) startFunction('remote-write', { PORT: String(remoteWritePort) });
    for (let i = 0; i < (opts.ingestWorkers ?? 1); i++) startFunction('ingest');
    for (let i = 0; i < (opts.collectWorkers ?? 1); i++) startFunction('collect');
    const urls = { upload: stack.uploadUrl, query: stack.queryUrl, 'remote-write': stack.remoteWriteUrl };
    for (const url of http.map((h) => urls[h])) {
      await waitFor(async () => {
        const dead = processes.find((p) => p.process.exitCode !== null);
        if (dead) throw new WaitAborted(`${dead.name} exited:\n${dead.output.join('\n')}`);
        return (await fetch(`${url}/healthz`)).ok;
      }, `${url}/healthz`, 60_000, 200);
    }
  } catch (e) {
    await stack.stop();
    throw e;
  }
  return stack;
}
