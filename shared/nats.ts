import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, type NatsConnection, type ConnectionOptions } from 'nats';
import { natsEnv, parseEnv, type NatsConfig } from './config.ts';

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
