import { createServer } from 'node:net';

/** A TCP port that was free a moment ago (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Thrown by a waitFor check when waiting longer cannot help (e.g. the process died). */
export class WaitAborted extends Error {}

export async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      // A check that never settles (nats.js's kv.keys() can wait forever for a message removed
      // while it listed: seen once in CI) counts as a failed attempt after a quarter of the
      // timeout (at least 2 s, at most what is left), and the next attempt starts afresh.
      let timer: NodeJS.Timeout | undefined;
      const attemptMs = Math.min(Math.max(2000, timeoutMs / 4), Math.max(0, deadline - Date.now()));
      const expired = new Promise<false>((r) => (timer = setTimeout(() => r(false), attemptMs)));
      const ok = await Promise.race([check(), expired]).finally(() => clearTimeout(timer));
      if (ok) return;
    } catch (e) {
      if (e instanceof WaitAborted) throw e;
      lastError = e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
}
