import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, type NatsConnection, type ConnectionOptions } from 'nats';
import { natsEnv, parseEnv, type NatsConfig } from './config.ts';
import { within, type NotReady } from './http.ts';

export function natsOptions(cfg: NatsConfig, name: string): ConnectionOptions {
  const opts: ConnectionOptions = {
    servers: cfg.NATS_URL.split(',').map((s) => s.trim()),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
  };
  if (cfg.NATS_CREDS_FILE) opts.authenticator = credsAuthenticator(readFileSync(cfg.NATS_CREDS_FILE));
  if (cfg.NATS_USER) opts.user = cfg.NATS_USER;
  if (cfg.NATS_PASSWORD) opts.pass = cfg.NATS_PASSWORD;
  if (cfg.NATS_TOKEN) opts.token = cfg.NATS_TOKEN;
  return opts;
}

export function connectNats(name: string, env: NodeJS.ProcessEnv = process.env): Promise<NatsConnection> {
  return connect(natsOptions(parseEnv(natsEnv, env), name));
}

/** One lazily opened connection per process, shared by the handlers living in it. */
let shared: Promise<NatsConnection> | undefined;
export function sharedNats(name: string): Promise<NatsConnection> {
  if (!shared) {
    shared = connectNats(name);
    shared.catch(() => (shared = undefined));
  }
  return shared;
}

export async function closeSharedNats(): Promise<void> {
  const p = shared;
  shared = undefined;
  if (p) await (await p).drain().catch(() => undefined);
}

/**
 * Readiness of NATS: a real round trip within `timeoutMs`. A connection that is reconnecting
 * is not closed, but it does not answer, so `isClosed()` alone would say ready.
 */
export async function natsReadiness(getNats: () => Promise<NatsConnection>, timeoutMs = 3000): Promise<NotReady[]> {
  try {
    await within(timeoutMs, 'NATS round trip', getNats().then((nc) => (nc.isClosed() ? Promise.reject(new Error('connection closed')) : nc.rtt())));
    return [];
  } catch (e) {
    return [{ dependency: 'NATS', detail: e instanceof Error ? e.message : String(e) }];
  }
}
