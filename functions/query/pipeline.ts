import { readFile } from 'node:fs/promises';
import type { NatsConnection } from 'nats';
import { CONSUMERS, STREAMS } from '../../shared/names.ts';

// GET /api/v1/pipeline: what the console's Pipeline page shows. Lag per stream comes from
// JetStream consumer info (what KEDA scales on), dead letters from the DEAD_LETTER stream, rows
// stored per second from collect's announcements seen by this process, and replicas from the
// local autoscaler's status file when one runs (in a cluster: `kubectl get hpa`, not shown).

export interface ConsumerLag {
  stream: string;
  consumer: string;
  /** Messages not yet delivered (KEDA's lag) plus delivered but not acknowledged. */
  pending: number;
  ack_pending: number;
  redelivered: number;
  waiting_pulls: number;
}

export interface PipelineState {
  at: string;
  consumers: ConsumerLag[];
  /** csv.uploaded events (file parts) not yet ingested: pending + in progress. */
  parts_waiting: number;
  dead_letters: { messages: number; bytes: number };
  rows_stored_per_second: number;
  rows_window_seconds: number;
  live_clients: number;
  autoscaler: { updated_at: string; functions: { function: string; replicas: number; lag: number | null; min: number; max: number }[] } | null;
}

const WATCHED: [string, string][] = [
  [STREAMS.uploads, CONSUMERS.ingest],
  [STREAMS.telemetry, CONSUMERS.collect],
];

interface AutoscalerFile {
  updatedAt: string;
  stoppedAt?: string;
  scaledObjects: { target: string; replicas: number; lag: number | null; minReplicaCount: number; maxReplicaCount: number }[];
}

async function autoscaler(file: string | undefined): Promise<PipelineState['autoscaler']> {
  if (!file) return null;
  try {
    const s = JSON.parse(await readFile(file, 'utf8')) as AutoscalerFile;
    if (s.stoppedAt || !Array.isArray(s.scaledObjects)) return null;
    return {
      updated_at: s.updatedAt,
      functions: s.scaledObjects.slice(0, 20).map((o) => ({ function: o.target, replicas: o.replicas, lag: o.lag, min: o.minReplicaCount, max: o.maxReplicaCount })),
    };
  } catch {
    return null; // not running (yet): the page says so
  }
}

export async function pipelineState(
  nc: NatsConnection,
  extra: { rows: { rows_per_second: number; window_seconds: number }; liveClients: number; autoscalerFile?: string },
): Promise<PipelineState> {
  const jsm = await nc.jetstreamManager();
  const consumers = await Promise.all(
    WATCHED.map(async ([stream, consumer]): Promise<ConsumerLag> => {
      const info = await jsm.consumers.info(stream, consumer);
      return {
        stream,
        consumer,
        pending: info.num_pending,
        ack_pending: info.num_ack_pending,
        redelivered: info.num_redelivered,
        waiting_pulls: info.num_waiting,
      };
    }),
  );
  const dead = await jsm.streams.info(STREAMS.deadLetter);
  const uploads = consumers[0];
  return {
    at: new Date().toISOString(),
    consumers,
    parts_waiting: uploads.pending + uploads.ack_pending,
    dead_letters: { messages: dead.state.messages, bytes: dead.state.bytes },
    rows_stored_per_second: Math.round(extra.rows.rows_per_second * 10) / 10,
    rows_window_seconds: extra.rows.window_seconds,
    live_clients: extra.liveClients,
    autoscaler: await autoscaler(extra.autoscalerFile),
  };
}
