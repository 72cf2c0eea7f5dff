import { pino, type Logger } from 'pino';
import { z } from 'zod';
import { parseEnv } from './config.ts';

// One structured logger per process (pino: JSON lines, levels, cheap when a level is off).
// LOG_LEVEL is validated like every other variable; a bad value stops the process naming it.

export const logEnv = z.object({
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export const logger: Logger = pino({
  level: parseEnv(logEnv).LOG_LEVEL,
  // Level names rather than numbers, and ISO times: read by people as often as by collectors.
  formatters: { level: (label) => ({ level: label }) },
  timestamp: pino.stdTimeFunctions.isoTime,
  base: { pid: process.pid },
});

/** A logger whose lines carry `fn` (the function or tool name). */
export const loggerFor = (fn: string): Logger => logger.child({ fn });
