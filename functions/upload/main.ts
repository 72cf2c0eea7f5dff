// Production entry (bundled to dist/upload.js): serves the upload function with a streaming
// node:http server on $HTTP_HOST:$PORT.
import { parseEnv } from '../../shared/config.ts';
import { listenOptions, serve } from '../../shared/http.ts';
import { loggerFor } from '../../shared/log.ts';
import { closeSharedNats } from '../../shared/nats.ts';
import { zstdReady } from '../../shared/zstd.ts';
import { uploadEnv } from './config.ts';
import { uploadFunction } from './index.ts';

const cfg = parseEnv(uploadEnv);
// Parts are stored zstd-compressed: a missing or broken zstd.wasm fails the start, not every upload.
await zstdReady();
// Created before listening: the reaper sweeps from the start, not from the first request.
await serve(uploadFunction(), listenOptions(cfg), closeSharedNats, { drainMs: cfg.HTTP_DRAIN_MS });
loggerFor('upload').info(
  { host: cfg.HTTP_HOST, port: cfg.PORT, auth: cfg.API_TOKENS.size ? 'bearer tokens' : 'OPEN (no API_TOKENS set)' },
  'listening',
);
