// Production entry (bundled to dist/query.js): serves the query function on $PORT.
import { parseEnv } from '../../shared/config.ts';
import { closeSharedClickHouse } from '../../shared/clickhouse.ts';
import { serve } from '../../shared/http.ts';
import { closeSharedNats } from '../../shared/nats.ts';
import { queryEnv } from './config.ts';
import { queryHandler } from './index.ts';

// Fail at start-up, naming the variable, when the configuration is invalid.
const cfg = parseEnv(queryEnv);
await serve(
  queryHandler,
  cfg.PORT,
  async () => {
    await Promise.allSettled([closeSharedClickHouse(), closeSharedNats()]);
  },
  { drainMs: cfg.HTTP_DRAIN_MS },
);
console.log(JSON.stringify({ level: 'info', msg: 'query listening', port: cfg.PORT, auth: cfg.API_TOKENS.size ? 'bearer tokens' : 'OPEN (no API_TOKENS set)' }));
