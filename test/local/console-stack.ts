// A stack for looking at the console by hand or from a benchmark: free ports, the upload
// function opened to the console's origin by CORS, and the bundled sample uploaded.
import { readFileSync } from 'node:fs';
import { FIXTURE_CSV } from '../support/fixtures.ts';
import { freePort, waitFor } from '../support/ports.ts';
import { startStack, type Stack, type StackOptions } from './stack.ts';

export async function startConsoleStack(opts: StackOptions & { sample?: boolean } = {}): Promise<Stack> {
  const uploadPort = await freePort();
  const queryPort = await freePort();
  const stack = await startStack({
    ...opts,
    uploadPort,
    queryPort,
    env: {
      UPLOAD_PUBLIC_URL: `http://127.0.0.1:${uploadPort}`,
      UPLOAD_CORS_ORIGINS: `http://127.0.0.1:${queryPort}`,
      COLLECT_MAX_WAIT_MS: '1000',
      ...opts.env,
    },
  });
  if (opts.sample) await uploadAndWait(stack, readFileSync(FIXTURE_CSV, 'utf8'), opts.env?.API_TOKENS ? opts.env.API_TOKENS.split(':')[0] : undefined);
  return stack;
}

export async function uploadAndWait(stack: Stack, body: string, token?: string): Promise<{ id: string; rows_stored: number }> {
  const auth: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const res = await fetch(`${stack.uploadUrl}/api/v1/uploads`, { method: 'POST', body, headers: { 'content-type': 'text/csv', ...auth } });
  if (res.status !== 202) throw new Error(`upload: HTTP ${res.status} ${await res.text()}`);
  const { id } = (await res.json()) as { id: string };
  let status: { id: string; state: string; rows_stored: number } | undefined;
  await waitFor(async () => {
    status = (await (await fetch(`${stack.uploadUrl}/api/v1/uploads/${id}`, { headers: auth })).json()) as typeof status;
    if (status!.state === 'failed') throw new Error(`upload ${id} failed`);
    return status!.state === 'done';
  }, `upload ${id}`, 60_000, 100);
  return status!;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const stack = await startConsoleStack({ sample: true });
  console.log(`console: ${stack.queryUrl}/  upload: ${stack.uploadUrl}`);
  const stop = () => void stack.stop().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
