import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

// One Prometheus registry per process; every function exposes it on /metrics.
export const registry = new Registry();
collectDefaultMetrics({ register: registry });

export const httpRequestDuration = new Histogram({
  name: 'gputel_http_request_duration_seconds',
  help: 'HTTP request latency by function, route, method and status',
  labelNames: ['function', 'route', 'method', 'status'],
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [registry],
});

export const messagesProcessed = new Counter({
  name: 'gputel_messages_total',
  help: 'JetStream messages handled by a pull worker, by outcome (ack, nak, dead_letter)',
  labelNames: ['consumer', 'outcome'],
  registers: [registry],
});

export const rowsCounter = new Counter({
  name: 'gputel_rows_total',
  help: 'CSV rows by stage and outcome (ingest accepted/rejected, collect stored)',
  labelNames: ['stage', 'outcome'],
  registers: [registry],
});

export async function metricsText(): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}
