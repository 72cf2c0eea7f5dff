import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { clickhouseEnv, parseEnv, type ClickHouseConfig } from './config.ts';

export function clickhouseClient(cfg: ClickHouseConfig, opts: { database?: string | null } = {}): ClickHouseClient {
  return createClient({
    url: cfg.CLICKHOUSE_URL,
    username: cfg.CLICKHOUSE_USER,
    password: cfg.CLICKHOUSE_PASSWORD,
    // null = no default database (used to create it during provisioning)
    database: opts.database === null ? undefined : (opts.database ?? cfg.CLICKHOUSE_DATABASE),
    request_timeout: 120_000,
    max_open_connections: 16,
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
