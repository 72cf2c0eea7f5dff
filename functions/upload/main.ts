// Production entry (bundled to dist/upload.js): serves the upload function with a streaming
// node:http server on $PORT.
import { parseEnv } from '../../shared/config.ts';
import { serve } from '../../shared/http.ts';
import { closeSharedNats } from '../../shared/nats.ts';
import { uploadEnv } from './config.ts';
import { uploadHandler } from './index.ts';

const cfg = parseEnv(uploadEnv);
await serve(uploadHandler, cfg.PORT, closeSharedNats, { drainMs: cfg.HTTP_DRAIN_MS });
console.log(JSON.stringify({ level: 'info', msg: 'upload listening', port: cfg.PORT, auth: cfg.API_TOKENS.size ? 'bearer tokens' : 'OPEN (no API_TOKENS set)' }));
