// Production entry (bundled to dist/query.js): serves the query function on $PORT.
import { parseEnv } from '../../shared/config.ts';
import { closeSharedClickHouse } from '../../shared/clickhouse.ts';
import { listenOptions, serve } from '../../shared/http.ts';
import { loggerFor } from '../../shared/log.ts';
import { closeSharedNats } from '../../shared/nats.ts';
import { queryEnv } from './config.ts';
import { closeQueryHandler, queryHandler } from './index.ts';

// Fail at start-up, naming the variable, when the configuration is invalid.
const cfg = parseEnv(queryEnv);
await serve(
  queryHandler,
  listenOptions(cfg),
  async () => {
    await closeQueryHandler();
    await Promise.allSettled([closeSharedClickHouse(), closeSharedNats()]);
  },
  { drainMs: cfg.HTTP_DRAIN_MS },
);
// Live (SSE) streams never finish by themselves: end them at once so the drain can complete.
process.once('SIGTERM', () => void closeQueryHandler());
const log = loggerFor('query');
log.info({ host: cfg.HTTP_HOST, port: cfg.PORT, auth: cfg.API_TOKENS.size ? 'bearer tokens' : 'OPEN (no API_TOKENS set)' }, 'listening');
if (!cfg.CURSOR_SECRET) log.warn('CURSOR_SECRET is not set: cursors are signed with a random key of this process and stop working when it restarts or on another replica');
