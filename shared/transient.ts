// Telling a dependency failure from a failure of the message itself.

const TRANSIENT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'TIMEOUT', '503', 'CONNECTION_REFUSED']);

/**
 * Failures of a dependency rather than of the message (connection refused, timeouts, a full
 * stream pushing back). They are retried without limit and never dead-lettered: an outage must
 * not turn good data into dead letters.
 */
export function isTransient(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown; cause?: unknown } | undefined;
  if (!err) return false;
  if (TRANSIENT_CODES.has(String(err.code))) return true;
  // Message texts of the ClickHouse client's request timeout and of NATS back-pressure; a
  // server-side "Timeout exceeded" (a query limit) is deliberately not among them.
  if (/socket hang up|^timeout error|maximum (messages|bytes) exceeded|connection (closed|refused)/i.test(String(err.message ?? ''))) return true;
  return err.cause !== undefined && err.cause !== e && isTransient(err.cause);
}

