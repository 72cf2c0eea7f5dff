// Production entry (bundled to dist/remote-write.js): serves the remote-write function on $HTTP_HOST:$PORT.
import { parseEnv } from '../../shared/config.ts';
import { listenOptions, serve } from '../../shared/http.ts';
import { loggerFor } from '../../shared/log.ts';
import { closeSharedNats } from '../../shared/nats.ts';
import { zstdReady } from '../../shared/zstd.ts';
import { remoteWriteEnv } from './config.ts';
import { WRITE_PATH, remoteWriteHandler } from './index.ts';

// Fail at start-up, naming the variable, when the configuration is invalid.
const cfg = parseEnv(remoteWriteEnv);
// Batches are zstd-compressed: a missing or broken zstd.wasm fails the start, not every request.
await zstdReady();
await serve(remoteWriteHandler, listenOptions(cfg), closeSharedNats, { drainMs: cfg.HTTP_DRAIN_MS });
loggerFor('remote-write').info(
  { host: cfg.HTTP_HOST, port: cfg.PORT, path: WRITE_PATH, auth: cfg.API_TOKENS.size ? 'bearer tokens' : 'OPEN (no API_TOKENS set)' },
  'listening',
);
