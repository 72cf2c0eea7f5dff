import { z } from 'zod';

// Configuration is parsed and validated into typed objects before anything acts on it
// (the KEDA scaler style): a bad value fails at start-up with the variable's name.

export class ConfigError extends Error {}

export function parseEnv<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const result = schema.safeParse(env);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid configuration: ${problems}`);
  }
  return result.data;
}

/** Integer env var with a default and bounds. */
export const intVar = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(def);

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === '' ? undefined : v));

export const natsEnv = z.object({
  NATS_URL: z.string().default('nats://127.0.0.1:4222'),
  /** Path to a NATS credentials (.creds) file, mounted from a Secret. */
  NATS_CREDS_FILE: optionalString,
  NATS_USER: optionalString,
  NATS_PASSWORD: optionalString,
  NATS_TOKEN: optionalString,
});
export type NatsConfig = z.infer<typeof natsEnv>;

export const clickhouseEnv = z.object({
  CLICKHOUSE_URL: z.string().url().default('http://127.0.0.1:8123'),
  CLICKHOUSE_USER: z.string().default('default'),
  CLICKHOUSE_PASSWORD: z.string().default(''),
  CLICKHOUSE_DATABASE: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain identifier')
    .default('telemetry'),
  /**
   * How long an idle keep-alive connection to ClickHouse is reused. Must stay below the server's
   * keep_alive_timeout (3 s on older servers and many configs) and any proxy idle timeout in
   * between, or a request can go out on a connection the server is closing ("socket hang up").
   * Default (in shared/clickhouse.ts) 2000.
   */
  CLICKHOUSE_IDLE_SOCKET_TTL_MS: z.coerce.number().int().min(100).max(600_000).optional(),
});
export type ClickHouseConfig = z.infer<typeof clickhouseEnv>;

export const SCOPES = ['upload', 'read', 'write'] as const;
export type Scope = (typeof SCOPES)[number];

/**
 * API_TOKENS="tokenA:upload+read,tokenB:read,tokenC:write". Scopes: upload (CSV uploads), read
 * (queries), write (Prometheus remote write). Empty or unset = open API (demo only).
 */
export const apiTokens = z
  .string()
  .optional()
  .transform((raw, ctx) => {
    const tokens = new Map<string, Set<Scope>>();
    for (const entry of (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
      const [token, scopes] = entry.split(':');
      const list = (scopes ?? '').split('+').filter(Boolean);
      if (!token || list.length === 0 || list.some((s) => !SCOPES.includes(s as Scope))) {
        ctx.addIssue({ code: 'custom', message: `entry must be <token>:<scope>[+<scope>] with scopes ${SCOPES.join('/')}` });
        return z.NEVER;
      }
      tokens.set(token, new Set(list as Scope[]));
    }
    return tokens;
  });

/**
 * The interface an HTTP server binds: loopback by default, so a local run is not reachable from
 * the network unless asked (`npm run dev -- --expose`); containers set 0.0.0.0 (ConfigMap, image).
 */
export const listenEnv = z.object({
  HTTP_HOST: z
    .string()
    .regex(/^(?:[0-9A-Za-z-]{1,63}(?:\.[0-9A-Za-z-]{1,63})*|[0-9A-Fa-f:.]{2,45})$/, 'must be an IP address or a host name')
    .default('127.0.0.1'),
});

export const httpEnv = z
  .object({
    PORT: intVar(8080, 0, 65535),
    /** After SIGTERM, how long in-flight requests (e.g. a long upload) may take before exit. */
    HTTP_DRAIN_MS: intVar(25_000, 0, 3_600_000),
    API_TOKENS: apiTokens,
    /**
     * Longest time to receive a whole request, body included (Node's requestTimeout; 408 after).
     * Keep it at least the platform's own limit (Knative timeoutSeconds), which is the real one.
     */
    HTTP_REQUEST_TIMEOUT_MS: intVar(120_000, 1000, 3_600_000),
    /** Longest time to receive the request headers (slow-header clients get 408). */
    HTTP_HEADERS_TIMEOUT_MS: intVar(30_000, 100, 600_000),
    /** A client that sends nothing of its request body for this long is cut off with 408. */
    HTTP_IDLE_TIMEOUT_MS: intVar(30_000, 100, 3_600_000),
  })
  .extend(listenEnv.shape);
export type HttpConfig = z.infer<typeof httpEnv>;

/** Cross-variable rule of httpEnv, applied by every schema built on it (extend drops refinements). */
export function httpTimeoutsRule(c: Pick<HttpConfig, 'HTTP_REQUEST_TIMEOUT_MS' | 'HTTP_HEADERS_TIMEOUT_MS' | 'HTTP_IDLE_TIMEOUT_MS'>, ctx: z.RefinementCtx): void {
  if (c.HTTP_HEADERS_TIMEOUT_MS > c.HTTP_REQUEST_TIMEOUT_MS) {
    ctx.addIssue({ code: 'custom', path: ['HTTP_HEADERS_TIMEOUT_MS'], message: 'must not exceed HTTP_REQUEST_TIMEOUT_MS' });
  }
  if (c.HTTP_IDLE_TIMEOUT_MS > c.HTTP_REQUEST_TIMEOUT_MS) {
    ctx.addIssue({ code: 'custom', path: ['HTTP_IDLE_TIMEOUT_MS'], message: 'must not exceed HTTP_REQUEST_TIMEOUT_MS' });
  }
}

export const workerEnv = z.object({
  /** Deliveries before a failing message is dead-lettered and terminated. */
  WORKER_MAX_DELIVER: intVar(5, 1, 100),
  /** First retry delay; doubles per delivery (nak with delay), capped at 60 s. */
  WORKER_RETRY_BASE_MS: intVar(1000, 0, 600_000),
  /** Port for /healthz, /readyz and /metrics of a pull worker (0 = off). */
  WORKER_HTTP_PORT: intVar(8080, 0, 65535),
  /**
   * In-progress signal interval for every message a worker holds; at most 1/3 of the consumers'
   * ack_wait (CONSUMER_ACK_WAIT_MS), checked when the worker starts.
   */
  WORKER_HEARTBEAT_MS: intVar(2000, 100, 600_000),
}).extend(listenEnv.shape);
export type WorkerConfig = z.infer<typeof workerEnv>;
