import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startAutoscaler, type AutoscalerOptions } from './autoscaler.ts';
import { formatStatus, readStatusFile } from './status.ts';

// Entry points for the local CLI (`npm run scale` / `autoscale`, `status`).

export { startAutoscaler, type Autoscaler, type AutoscalerOptions, type AutoscaleDecision } from './autoscaler.ts';
export { ProcessPool, startFixedPools, type WorkerPool } from './process-pool.ts';
export { formatStatus, readStatusFile } from './status.ts';

export const statusFileIn = (dataDir: string) => join(dataDir, 'autoscaler-status.json');

/** Autoscale the queue workers of a running local stack; resolves to a stop function. */
export async function startLocalAutoscaler(
  stack: { env: Record<string, string>; nats: { monitorEndpoint: string } },
  dataDir: string,
  opts: Partial<AutoscalerOptions> = {},
): Promise<() => Promise<void>> {
  const autoscaler = startAutoscaler({
    monitorEndpoint: stack.nats.monitorEndpoint,
    env: stack.env,
    statusFile: statusFileIn(dataDir),
    ...opts,
  });
  return () => autoscaler.stop();
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Print the status snapshot an autoscaler wrote under dataDir. */
export function printStatus(dataDir: string, log: (s: string) => void = console.log): void {
  const file = statusFileIn(dataDir);
  if (!existsSync(file)) {
    log(`no autoscaler status at ${file} (start one with \`npm run scale\`)`);
    return;
  }
  const snapshot = readStatusFile(file);
  log(formatStatus(snapshot));
  if (!snapshot.stoppedAt && !alive(snapshot.pid)) log(`(autoscaler pid ${snapshot.pid} is not running: this is its last snapshot)`);
}
