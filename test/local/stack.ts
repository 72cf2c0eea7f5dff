import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { provisionAll } from '../../shared/provision-main.ts';
import { WaitAborted, freePort, waitFor } from '../support/ports.ts';
import { startClickHouse, startNats, stopProcess, type NatsServer, type RunningServer } from '../support/servers.ts';


// The local stack: a real nats-server (JetStream) and the ClickHouse engine from chdb, provisioned
// like the cluster's Job does, plus the four functions as separate processes, exactly as they run
// in production (HTTP servers and JetStream pull workers). Used by `npm run demo`/`dev`, the
// end-to-end tests and the benchmark.

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export type FunctionName = 'upload' | 'query' | 'ingest' | 'collect';

const ENTRIES: Record<FunctionName, { ts: string; js: string }> = {
  upload: { ts: 'functions/upload/main.ts', js: 'dist/upload.js' },
  query: { ts: 'functions/query/main.ts', js: 'dist/query.js' },
  ingest: { ts: 'functions/ingest/worker.ts', js: 'dist/ingest-worker.js' },
  collect: { ts: 'functions/collect/worker.ts', js: 'dist/collect-worker.js' },
};

export interface StackOptions {
  /** Where NATS and ClickHouse keep data; a temp dir (removed on stop) when omitted. */
  dataDir?: string;
  ingestWorkers?: number;
  collectWorkers?: number;
  /** Run the esbuild bundles from dist/ instead of the TypeScript sources. */
  useBundles?: boolean;
  /** Extra environment for every function process. */
  env?: Record<string, string>;
  /** Fixed ports for upload/query (dev mode); free ports when omitted. */
  uploadPort?: number;
  queryPort?: number;
  /** HTTP functions to start (default both). */
  httpFunctions?: ('upload' | 'query')[];
  /** Print function output with a `[name]` prefix (default: only errors are kept). */
  verbose?: boolean;
}

export interface FunctionProcess {
  name: string;
  process: ChildProcess;
  output: string[];
}

export interface Stack {
  nats: NatsServer;
  clickhouse: RunningServer;
  uploadUrl: string;
  queryUrl: string;
  /** Environment a function process of this stack gets (NATS/ClickHouse URLs, settings). */
  env: Record<string, string>;
  processes: FunctionProcess[];
  startFunction(name: FunctionName, extraEnv?: Record<string, string>): FunctionProcess;
  stopFunction(p: FunctionProcess): Promise<void>;
  stop(opts?: { keepData?: boolean }): Promise<void>;
}

export function functionCommand(name: FunctionName, useBundles = false): string[] {
  const entry = ENTRIES[name];
  return useBundles ? [join(repoRoot, entry.js)] : ['--import', 'tsx', join(repoRoot, entry.ts)];
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const natsDir = opts.dataDir ? join(opts.dataDir, 'nats') : undefined;
  const chDir = opts.dataDir ? join(opts.dataDir, 'clickhouse') : undefined;
  if (opts.dataDir) mkdirSync(opts.dataDir, { recursive: true });
  const [natsResult, chResult] = await Promise.allSettled([startNats({ dataDir: natsDir }), startClickHouse({ dataDir: chDir })]);
  if (natsResult.status === 'rejected' || chResult.status === 'rejected') {
    // Do not leave the one that did start running.
    await Promise.all([natsResult, chResult].map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    throw natsResult.status === 'rejected' ? natsResult.reason : (chResult as PromiseRejectedResult).reason;
  }
  const nats = natsResult.value;
  const clickhouse = chResult.value;
  const uploadPort = opts.uploadPort ?? (await freePort());
  const queryPort = opts.queryPort ?? (await freePort());
  const env: Record<string, string> = {
    NATS_URL: nats.url,
    CLICKHOUSE_URL: clickhouse.url,
    CLICKHOUSE_DATABASE: 'telemetry',
    WORKER_HTTP_PORT: '0',
    ...opts.env,
  };
  const processes: FunctionProcess[] = [];
  const counters = new Map<string, number>();

  function startFunction(name: FunctionName, extraEnv: Record<string, string> = {}): FunctionProcess {
    const n = (counters.get(name) ?? 0) + 1;
    counters.set(name, n);
    const label = `${name}#${n}`;
    const proc = spawn(process.execPath, functionCommand(name, opts.useBundles), {
      cwd: repoRoot,
      env: { ...process.env, ...env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const fp: FunctionProcess = { name: label, process: proc, output: [] };
    const onData = (d: Buffer) => {
      for (const line of d.toString('utf8').split('\n').filter(Boolean)) {
        fp.output.push(line);
        if (fp.output.length > 200) fp.output.shift();
        if (opts.verbose) console.log(`[${label}] ${line}`);
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    processes.push(fp);
    return fp;
  }

  async function stopFunction(p: FunctionProcess): Promise<void> {
    await stopProcess(p.process, 30_000);
    processes.splice(processes.indexOf(p), 1);
  }

  const stack: Stack = {
    nats,
    clickhouse,
    uploadUrl: `http://127.0.0.1:${uploadPort}`,
    queryUrl: `http://127.0.0.1:${queryPort}`,
    env,
    processes,
    startFunction,
    stopFunction,
    async stop(stopOpts = {}) {
      await Promise.all([...processes].map((p) => stopProcess(p.process, 30_000)));
      await Promise.all([stack.nats.stop(stopOpts), stack.clickhouse.stop(stopOpts)]);
    },
  };
  try {
    await provisionAll({ ...process.env, ...env });
    const http = opts.httpFunctions ?? ['upload', 'query'];
    if (http.includes('upload')) startFunction('upload', { PORT: String(uploadPort) });
    if (http.includes('query')) startFunction('query', { PORT: String(queryPort) });
    for (let i = 0; i < (opts.ingestWorkers ?? 1); i++) startFunction('ingest');
    for (let i = 0; i < (opts.collectWorkers ?? 1); i++) startFunction('collect');
    const urls = { upload: stack.uploadUrl, query: stack.queryUrl };
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
