import { readFile } from 'node:fs/promises';
import type { NatsConnection } from 'nats';
import type { z } from 'zod';
import { CONSUMERS, STREAMS } from '../../shared/names.ts';
import type { pipelineSchema } from './schemas.ts';

// GET /api/v1/pipeline: what the console's Pipeline page shows. Lag per stream comes from
// JetStream consumer info (what KEDA scales on), dead letters from the DEAD_LETTER stream, rows
// stored per second from collect's announcements seen by this process, and replicas from the
// local autoscaler's status file when one runs (in a cluster: `kubectl get hpa`, not shown).

export type PipelineState = z.infer<typeof pipelineSchema>;
type ConsumerLag = PipelineState['consumers'][number];

const WATCHED: [string, string][] = [
  [STREAMS.uploads, CONSUMERS.ingest],
  [STREAMS.telemetry, CONSUMERS.collect],
  [STREAMS.rollups, CONSUMERS.rollups],
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
