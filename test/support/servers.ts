import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WaitAborted, freePort, waitFor } from './ports.ts';

// Real servers for tests and the local stack: a nats-server with JetStream and the ClickHouse
// engine from chdb, each on free ports with its own data dir, stopped (and cleaned) on request.

const here = dirname(fileURLToPath(import.meta.url));

export interface RunningServer {
  url: string;
  dataDir: string;
  process: ChildProcess;
  stop(opts?: { keepData?: boolean }): Promise<void>;
}

export interface NatsServer extends RunningServer {
  port: number;
  monitorPort: number;
  /** `host:port` of the monitoring endpoint, the form KEDA's natsServerMonitoringEndpoint takes. */
  monitorEndpoint: string;
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the process has exited. */
export async function stopProcess(proc: ChildProcess, graceMs = 5000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

function stopper(proc: ChildProcess, dataDir: string, ownsDir: boolean) {
  return async (opts: { keepData?: boolean } = {}) => {
    await stopProcess(proc);
    if (ownsDir && !opts.keepData) rmSync(dataDir, { recursive: true, force: true });
  };
}

export function natsServerBinary(): string {
  const candidates = [process.env.NATS_SERVER_BIN, '/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'];
  for (const c of candidates) if (c && existsSync(c)) return c;
  const which = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) return which.stdout.trim();
  throw new Error(
    'nats-server was not found. Install it (Debian/Ubuntu: `sudo apt-get install nats-server`; ' +
      'or download from https://github.com/nats-io/nats-server/releases) or set NATS_SERVER_BIN.',
  );
}

/**
 * freePort() only says a port was free a moment ago: with other test runs on the machine it can
 * be taken before the server binds it. Chosen ports are tried again with new ones.
 */
async function retryTakenPort<T>(chosen: boolean, start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (e) {
      if (chosen || attempt >= 3 || !/address already in use/i.test(String(e))) throw e;
    }
  }
}

/** Where a nats-server started by startNats on `dataDir` keeps JetStream's files. */
export const natsStoreDir = (dataDir: string): string => join(dataDir, 'js');

export function startNats(opts: { dataDir?: string; port?: number; monitorPort?: number } = {}): Promise<NatsServer> {
  return retryTakenPort(opts.port !== undefined || opts.monitorPort !== undefined, () => startNatsOnce(opts));
}

export interface ClickHouseOptions {
  dataDir?: string;
  port?: number;
  /**
   * Keep system.query_log, system.query_views_log and system.part_log (flushed every second):
   * what each statement, view and merge cost (`npm run bench:engine`). Off by default: the logs
   * cost the engine CPU of their own.
   */
  logs?: boolean;
}

/** Server settings that turn on the logs of ClickHouseOptions.logs. */
const ENGINE_LOGS_CONFIG = `<clickhouse>
${['query_log', 'query_views_log', 'part_log'].map((t) => `  <${t}><database>system</database><table>${t}</table><flush_interval_milliseconds>1000</flush_interval_milliseconds></${t}>`).join('\n')}
</clickhouse>
`;

export function startClickHouse(opts: ClickHouseOptions = {}): Promise<RunningServer & { port: number }> {
  return retryTakenPort(opts.port !== undefined, () => startClickHouseOnce(opts));
}

async function startNatsOnce(opts: { dataDir?: string; port?: number; monitorPort?: number }): Promise<NatsServer> {
  const ownsDir = !opts.dataDir;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'nats-'));
  mkdirSync(dataDir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const monitorPort = opts.monitorPort ?? (await freePort());
  const conf = join(dataDir, 'nats.conf');
  // max_payload 8 MiB: sample batches are a few MiB (default 1 MiB would force tiny batches).
  writeFileSync(
    conf,
    `listen: 127.0.0.1:${port}\nhttp: 127.0.0.1:${monitorPort}\nmax_payload: 8388608\n` +
      `jetstream { store_dir: "${natsStoreDir(dataDir)}" }\n`,
  );
  const proc = spawn(natsServerBinary(), ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const monitorEndpoint = `127.0.0.1:${monitorPort}`;
  try {
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new WaitAborted(`nats-server exited: ${stderr}`);
      const r = await fetch(`http://${monitorEndpoint}/healthz?js-enabled-only=true`);
      return r.ok;
    }, 'nats-server', 15_000);
  } catch (e) {
    proc.kill('SIGKILL');
    if (ownsDir) rmSync(dataDir, { recursive: true, force: true, maxRetries: 3 });
    throw e;
  }
  return { url: `nats://127.0.0.1:${port}`, port, monitorPort, monitorEndpoint, dataDir, process: proc, stop: stopper(proc, dataDir, ownsDir) };
}

export function libchdbPath(): string {
  const require = createRequire(import.meta.url);
  try {
    return join(dirname(require.resolve('@chdb/lib-linux-x64-gnu/package.json')), 'libchdb.so');
  } catch {
    throw new Error('libchdb.so not found: run `npm ci` (the chdb dev dependency ships the ClickHouse engine).');
  }
}

async function startClickHouseOnce(opts: ClickHouseOptions): Promise<RunningServer & { port: number }> {
  const ownsDir = !opts.dataDir;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'clickhouse-'));
  mkdirSync(dataDir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const python = process.env.PYTHON ?? 'python3';
  const config = join(dataDir, 'engine-logs.xml');
  if (opts.logs) writeFileSync(config, ENGINE_LOGS_CONFIG);
  const proc = spawn(python, [join(here, 'chdb-server.py'), libchdbPath(), dataDir, String(port), ...(opts.logs ? [config] : [])], {
    stdio: ['ignore', 'ignore', 'pipe'],
    cwd: dataDir,
  });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  proc.on('error', (e) => (stderr += String(e)));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new WaitAborted(`ClickHouse (chdb) exited: ${stderr}`);
      const r = await fetch(`${url}/ping`);
      return r.ok;
    }, 'ClickHouse (chdb)', 60_000);
  } catch (e) {
    proc.kill('SIGKILL');
    if (ownsDir) rmSync(dataDir, { recursive: true, force: true, maxRetries: 3 });
    throw e;
  }
  return { url, port, dataDir, process: proc, stop: stopper(proc, dataDir, ownsDir) };
}
