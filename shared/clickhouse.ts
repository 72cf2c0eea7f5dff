import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { clickhouseEnv, parseEnv, type ClickHouseConfig } from './config.ts';
import { within, type NotReady } from './http.ts';
import { loggerFor } from './log.ts';

export const DEFAULT_IDLE_SOCKET_TTL_MS = 2000;

export function clickhouseClient(cfg: ClickHouseConfig, opts: { database?: string | null } = {}): ClickHouseClient {
  return createClient({
    url: cfg.CLICKHOUSE_URL,
    username: cfg.CLICKHOUSE_USER,
    password: cfg.CLICKHOUSE_PASSWORD,
    // null = no default database (used to create it during provisioning)
    database: opts.database === null ? undefined : (opts.database ?? cfg.CLICKHOUSE_DATABASE),
    request_timeout: 120_000,
    max_open_connections: 16,
    keep_alive: {
      enabled: true,
      idle_socket_ttl: cfg.CLICKHOUSE_IDLE_SOCKET_TTL_MS ?? DEFAULT_IDLE_SOCKET_TTL_MS,
      // Also checks a socket's idle time when it is taken, not only by timer: under load the
      // timer fires late and a socket idle past the server's timeout would still be reused.
      eagerly_destroy_stale_sockets: true,
    },
    // Progress headers keep long inserts/queries alive through idle-timeout proxies.
    clickhouse_settings: { date_time_output_format: 'iso', send_progress_in_http_headers: 1, http_headers_progress_interval_ms: '20000' },
  });
}

let shared: { client: ClickHouseClient; cfg: ClickHouseConfig } | undefined;
/** One client per process; configuration from the environment. */
export function sharedClickHouse(): { client: ClickHouseClient; cfg: ClickHouseConfig } {
  if (!shared) {
    const cfg = parseEnv(clickhouseEnv);
    shared = { client: clickhouseClient(cfg), cfg };
  }
  return shared;
}

export async function closeSharedClickHouse(): Promise<void> {
  const s = shared;
  shared = undefined;
  if (s) await s.client.close();
}

/**
 * The request died on a kept-alive connection the server (or a proxy) closed as it was sent:
 * nothing was answered, so an idempotent read can simply be sent again on a new connection.
 */
export function isKeepAliveRace(e: unknown): boolean {
  for (let err = e as { code?: unknown; message?: unknown; cause?: unknown } | undefined, depth = 0; err && depth < 5; err = err.cause as typeof err, depth++) {
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || /socket hang up/i.test(String(err.message ?? ''))) return true;
  }
  return false;
}

/** Runs an idempotent read, once more if it hit the keep-alive race (never for writes). */
export async function retryRead<T>(read: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  try {
    return await read();
  } catch (e) {
    if (signal?.aborted || !isKeepAliveRace(e)) throw e;
    loggerFor('clickhouse').warn({ err: e }, 'read hit a connection the server had closed; retrying once on a new one');
    return read();
  }
}

/** Readiness of ClickHouse: a `SELECT 1` round trip within `timeoutMs`. */
export async function clickhouseReadiness(client: ClickHouseClient, timeoutMs = 3000): Promise<NotReady[]> {
  try {
    const r = await within(timeoutMs, 'ClickHouse ping', client.ping({ select: true }));
    return r.success ? [] : [{ dependency: 'ClickHouse', detail: r.error.message }];
  } catch (e) {
    return [{ dependency: 'ClickHouse', detail: e instanceof Error ? e.message : String(e) }];
  }
}
