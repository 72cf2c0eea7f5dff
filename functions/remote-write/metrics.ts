import { Counter } from 'prom-client';
import { registry } from '../../shared/metrics.ts';

// Remote-write sample accounting on the process registry (/metrics). Request latency and status
// are gputel_http_request_duration_seconds{function="remote-write"} from the shared router.

export const samplesReceived = new Counter({
  name: 'gputel_remote_write_samples_received_total',
  help: 'Samples in remote-write requests that decoded (float and native-histogram samples)',
  registers: [registry],
});

export const samplesAccepted = new Counter({
  name: 'gputel_remote_write_samples_accepted_total',
  help: 'Remote-write samples durably published to the telemetry stream',
  registers: [registry],
});

export const samplesDropped = new Counter({
  name: 'gputel_remote_write_samples_dropped_total',
  help: 'Remote-write samples not stored, by reason (no_uuid, stale, non_finite, invalid, histogram)',
  labelNames: ['reason'],
  registers: [registry],
});
