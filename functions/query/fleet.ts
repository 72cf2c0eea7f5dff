import type { ClickHouseClient } from '@clickhouse/client';
import type { z } from 'zod';
import type { Route } from '../../shared/http.ts';
import { findAnomalies, flagKinds, type Thresholds } from './anomalies.ts';
import type { FlagConfig } from './config.ts';
import { encodeListCursor, listFingerprint, type CursorSigner, type ListCursor } from './cursor.ts';
import {
  anomaliesQuery,
  gpusQuery,
  hostsQuery,
  LIST_KINDS,
  LIST_LIMITS,
  metricPathParams,
  TOP_LIMITS,
  topQuery,
  type AnomaliesQuery,
  type FlagKind,
  type GpusQuery,
  type TopQuery,
} from './fleet-schemas.ts';
import { fleetLatest, gpuInventoryPage, hostsPage, sampleCounts, topGpus } from './fleet-sql.ts';
import { invalidParameters, validateRequest } from './params.ts';
import { checkWindow, sendConditional, untilClientLeaves } from './requests.ts';
import { noQuery } from './schemas.ts';

// The fleet routes: GPU and host listings (keyset pages, filters, ETag), top GPUs per metric and
// health anomalies. `fleetService` answers with plain objects so REST (below) and GraphQL
// (graphql.ts) serve the very same results.

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;

export type FleetConfig = Thresholds & Pick<FlagConfig, 'FLAGS_WINDOW_S'>;
const iso = (ms: number) => new Date(ms).toISOString();
const ceilTo = (ms: number, unit: number) => Math.floor(ms / unit) * unit + unit;

function cursorFor(cursor: ListCursor | undefined, filters: unknown, parts: number): string[] | undefined {
  if (!cursor) return undefined;
  if (cursor.fingerprint !== listFingerprint(filters) || cursor.key.length !== parts) {
    throw invalidParameters([{ parameter: 'cursor', in: 'query', message: 'belongs to a different query (the filters must stay the same between pages)' }]);
  }
  return cursor.key;
}

export function fleetService(cfg: FleetConfig, clickhouse: () => ClickHouseClient, cursors: CursorSigner) {
  /** [start, end) with defaults anchored on the fleet's latest sample, so historical imports answer. */
  async function window(q: { start_time?: number; end_time?: number }, unit: number, spanMs: number, signal?: AbortSignal) {
    checkWindow(q, true);
    if (q.start_time !== undefined && q.end_time !== undefined) return { start: q.start_time, end: q.end_time };
    const latest = q.end_time === undefined ? ((await fleetLatest(clickhouse(), signal)) ?? Date.now()) : 0;
    const end = q.end_time ?? Math.max(ceilTo(latest, unit), (q.start_time ?? 0) + unit);
    return { start: q.start_time ?? end - spanMs, end };
  }
  const flagsWindow = (q: { start_time?: number; end_time?: number }, signal?: AbortSignal) => window(q, MINUTE_MS, cfg.FLAGS_WINDOW_S * 1000, signal);

  return {
    async gpus(q: GpusQuery, signal?: AbortSignal) {
      const { limit = LIST_LIMITS.defaultLimit, cursor, ...filters } = q;
      const after = cursorFor(cursor, filters, 1);
      const ch = clickhouse();
      const found = await gpuInventoryPage(ch, filters, { limit: limit + 1, after: after?.[0] }, signal);
      const page = found.slice(0, limit);
      const uuids = page.map((g) => g.uuid);
      const [counts, flagged] = await Promise.all([
        sampleCounts(ch, uuids, signal),
        uuids.length === 0
          ? []
          : flagsWindow({}, signal).then((w) => flagKinds(ch, { ...w, uuids, limit: uuids.length * 4 }, cfg, signal)),
      ]);
      const flags = new Map<string, FlagKind[]>();
      for (const a of flagged) flags.set(a.uuid, [...(flags.get(a.uuid) ?? []), a.kind]);
      return {
        gpus: page.map((g) => ({ ...g, samples: counts.get(g.uuid) ?? 0, flags: flags.get(g.uuid) ?? [] })),
        count: page.length,
        next_cursor: found.length > limit ? encodeListCursor(cursors, LIST_KINDS.gpus, filters, [page.at(-1)!.uuid]) : null,
      };
    },

    async hosts(q: { limit?: number; cursor?: ListCursor }, signal?: AbortSignal) {
      const limit = q.limit ?? LIST_LIMITS.defaultLimit;
      const after = cursorFor(q.cursor, {}, 1);
      const found = await hostsPage(clickhouse(), { limit: limit + 1, after: after?.[0] }, signal);
      const page = found.slice(0, limit);
      return {
        hosts: page,
        next_cursor: found.length > limit ? encodeListCursor(cursors, LIST_KINDS.hosts, {}, [page.at(-1)!.hostname]) : null,
      };
    },

    async top(metric: string, q: TopQuery, signal?: AbortSignal) {
      const { start, end } = await window(q, HOUR_MS, HOUR_MS, signal);
      const { source, gpus } = await topGpus(clickhouse(), { metric, start, end, by: q.by, order: q.order, limit: q.limit ?? TOP_LIMITS.defaultLimit }, signal);
      return { metric, by: q.by, order: q.order, start_time: iso(start), end_time: iso(end), source, gpus };
    },

    /** The anomalies of one GPU (GraphQL `gpu { flags }`). */
    async gpuFlags(uuid: string, q: Pick<AnomaliesQuery, 'start_time' | 'end_time' | 'kind'>, signal?: AbortSignal) {
      const { start, end } = await flagsWindow(q, signal);
      return { anomalies: await findAnomalies(clickhouse(), { start, end, kind: q.kind, uuids: [uuid], limit: 4 }, cfg, signal) };
    },

    async anomalies(q: AnomaliesQuery, signal?: AbortSignal) {
      const { limit = LIST_LIMITS.defaultLimit, cursor, ...filters } = q;
      const { start, end } = await flagsWindow(q, signal);
      // The resolved window is part of the fingerprint: a default window moves with new data.
      const scope = { ...filters, start_time: start, end_time: end };
      const after = cursorFor(cursor, scope, 2);
      const found = await findAnomalies(
        clickhouse(),
        { start, end, kind: q.kind, hostname: q.hostname, after: after && { uuid: after[0], kind: after[1] }, limit: limit + 1 },
        cfg,
        signal,
      );
      const page = found.slice(0, limit);
      const last = page.at(-1);
      return {
        start_time: iso(start),
        end_time: iso(end),
        anomalies: page,
        next_cursor: found.length > limit && last ? encodeListCursor(cursors, LIST_KINDS.anomalies, scope, [last.uuid, last.kind]) : null,
      };
    },
  };
}
export type FleetService = ReturnType<typeof fleetService>;

/** The REST routes over the service; `needRead` enforces the bearer scope. */
export function fleetRoutes(service: FleetService, cursors: CursorSigner, needRead: (req: Parameters<Route['handle']>[0]) => void): Route[] {
  const gpuParams = gpusQuery(cursors);
  const hostParams = hostsQuery(cursors);
  const anomalyParams = anomaliesQuery(cursors);
  /** A read route: bearer scope, one 400 for every bad parameter, then a conditional answer. */
  const route = <P extends z.ZodType, Q extends z.ZodType>(
    path: string,
    schemas: { path: P; query: Q },
    answer: (p: z.output<P>, q: z.output<Q>, signal: AbortSignal) => Promise<unknown>,
  ): Route => ({
    method: 'GET',
    path,
    handle: async (req, res, params, url) => {
      needRead(req);
      const v = validateRequest({ schema: schemas.path, values: params }, { schema: schemas.query, url });
      sendConditional(req, res, await untilClientLeaves(res, (signal) => answer(v.path, v.query, signal)));
    },
  });
  return [
    route('/api/v1/gpus', { path: noQuery, query: gpusQuery(cursors) }, (_p, q, signal) => service.gpus(q, signal)),
    route('/api/v1/hosts', { path: noQuery, query: hostsQuery(cursors) }, (_p, q, signal) => service.hosts(q, signal)),
    route('/api/v1/metrics/{metric}/top', { path: metricPathParams, query: topQuery }, (p, q, signal) => service.top(p.metric, q, signal)),
    route('/api/v1/anomalies', { path: noQuery, query: anomaliesQuery(cursors) }, (_p, q, signal) => service.anomalies(q, signal)),
  ];
}
