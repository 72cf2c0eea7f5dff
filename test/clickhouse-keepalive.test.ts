import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createQueryHandler } from '../functions/query/index.ts';
import { queryEnv } from '../functions/query/config.ts';
import { clickhouseClient, isKeepAliveRace, retryRead } from '../shared/clickhouse.ts';
import { parseEnv } from '../shared/config.ts';
import { provisionClickHouse } from '../shared/provision.ts';
import { startKeepAliveProxy, type KeepAliveProxy } from './support/keepalive-proxy.ts';
import { startClickHouse, type RunningServer } from './support/servers.ts';

// The spurious 503 ("socket hang up"): a request sent on a kept-alive connection just as the
// server closes it for being idle. Reproduced with a real TCP proxy in front of the real
// ClickHouse that answers exactly that way; the client's idle TTL below the server's timeout
// avoids it, and a read that still hits it is sent once more on a new connection.

const DB = 'keepalive_test';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let clickhouse: RunningServer & { port: number };
const proxies: KeepAliveProxy[] = [];
const clients: ClickHouseClient[] = [];
const servers: Server[] = [];

beforeAll(async () => {
  clickhouse = await startClickHouse();
  const admin = createClient({ url: clickhouse.url });
  await provisionClickHouse(admin, DB);
  await admin.close();
}, 120_000);

afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => (s.closeAllConnections(), s.close(r)))));
  await Promise.allSettled(clients.map((c) => c.close()));
  await Promise.all(proxies.map((p) => p.close()));
  await clickhouse?.stop();
});

async function proxy(opts: Parameters<typeof startKeepAliveProxy>[0] extends infer O ? Omit<O & object, 'upstreamPort'> : never) {
  const p = await startKeepAliveProxy({ upstreamPort: clickhouse.port, ...opts });
  proxies.push(p);
  return p;
}

/** The query function as production builds it (config from env), reading through `url`. */
async function queryApi(env: Record<string, string>): Promise<string> {
  const cfg = parseEnv(queryEnv, { CLICKHOUSE_DATABASE: DB, ...env });
  const client = clickhouseClient(cfg);
  clients.push(client);
  const server = createServer(createQueryHandler(cfg, { clickhouse: () => client, nats: () => Promise.reject(new Error('not used')) }) as never);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const status = async (url: string) => (await fetch(`${url}/api/v1/metrics`)).status;

describe('the keep-alive race with ClickHouse', () => {
  it('is real: a connection reused after the server closed it for idleness gets no answer (old client settings)', async () => {
    const p = await proxy({ idleCloseMs: 1500 });
    // The client library's default idle TTL (2.5 s) and lazy timer: what the functions used before.
    const client = createClient({ url: p.url, database: DB, keep_alive: { idle_socket_ttl: 2500 } });
    clients.push(client);
    await (await client.query({ query: 'SELECT 1', format: 'JSONEachRow' })).json();
    await sleep(2000);
    const failed = await client.query({ query: 'SELECT 1', format: 'JSONEachRow' }).then(() => undefined, (e: unknown) => e);
    expect(failed).toBeInstanceOf(Error);
    expect(String((failed as Error).message)).toMatch(/socket hang up|ECONNRESET/i);
    expect(isKeepAliveRace(failed)).toBe(true);
    expect(p.dropped()).toBe(1);
  });

  it('does not reach the API: an idle TTL below the server timeout never reuses an expired connection', async () => {
    const p = await proxy({ idleCloseMs: 1500 });
    const api = await queryApi({ CLICKHOUSE_URL: p.url, CLICKHOUSE_IDLE_SOCKET_TTL_MS: '200' });
    expect(await status(api)).toBe(200);
    await sleep(2000);
    expect(await status(api)).toBe(200);
    expect(p.dropped()).toBe(0);
  });

  it('a read that still hits it (a connection closed for another reason) is retried once: 200, not 503', async () => {
    // Every connection's second request is dropped, as if the server had just closed it.
    const p = await proxy({ drop: (n) => n === 2 });
    const api = await queryApi({ CLICKHOUSE_URL: p.url });
    expect(await status(api)).toBe(200);
    expect(await status(api)).toBe(200);
    expect(p.dropped()).toBe(1);
    expect(p.connections()).toBe(2);
  });
});

describe('retryRead', () => {
  const hangUp = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });

  it('retries the keep-alive race once, and nothing else', async () => {
    let calls = 0;
    expect(await retryRead(async () => (++calls === 1 ? Promise.reject(hangUp) : 'rows'))).toBe('rows');
    expect(calls).toBe(2);

    calls = 0;
    await expect(retryRead(async () => (calls++, Promise.reject(hangUp)))).rejects.toBe(hangUp);
    expect(calls).toBe(2);

    calls = 0;
    const syntax = new Error('Syntax error: failed at position 1');
    await expect(retryRead(async () => (calls++, Promise.reject(syntax)))).rejects.toBe(syntax);
    expect(calls).toBe(1);

    calls = 0;
    const ac = new AbortController();
    ac.abort();
    await expect(retryRead(async () => (calls++, Promise.reject(hangUp)), ac.signal)).rejects.toBe(hangUp);
    expect(calls).toBe(1);
  });

  it('recognises the race through error causes', () => {
    expect(isKeepAliveRace(new Error('request failed', { cause: hangUp }))).toBe(true);
    expect(isKeepAliveRace(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))).toBe(true);
    expect(isKeepAliveRace(new Error('Timeout error.'))).toBe(false);
    expect(isKeepAliveRace(undefined)).toBe(false);
  });
});
