import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import type { Decision } from './decide.ts';

// The autoscaler's status snapshot: what `status` prints, kept in memory and written as JSON to a
// file so another process (the CLI's `status` command) can read it.

export interface TriggerStatus {
  name?: string;
  stream: string;
  consumer: string;
  lagThreshold: number;
  activationLagThreshold: number;
  lag: number | null;
  numPending?: number;
  numAckPending?: number;
  error?: string;
  failures: number;
}

export interface ScaledObjectStatus {
  scaledObject: string;
  target: string;
  /** Per trigger, in manifest order. */
  triggers: TriggerStatus[];
  minReplicaCount: number;
  maxReplicaCount: number;
  pollingInterval: number;
  cooldownPeriod: number;
  replicas: number;
  /** Summed over the triggers read (the console's Pipeline page shows it); null if none was. */
  lag: number | null;
  active: boolean;
  error?: string;
  /** The most consecutive failures of any trigger. */
  failures: number;
  lastActiveTime?: string;
  lastDecision?: Decision & { at: string };
  /** Last decision that changed the replica count. */
  lastScale?: Decision & { at: string };
  updatedAt?: string;
}

export interface StatusSnapshot {
  pid: number;
  startedAt: string;
  updatedAt: string;
  /** Set when the autoscaler stopped (its workers were scaled to 0 unless kept). */
  stoppedAt?: string;
  scaledObjects: ScaledObjectStatus[];
}

/** Per trigger when there are several: `12,3` (`?` unread). */
const lagText = (lags: (number | null)[]) => lags.map((l) => (l === null ? '?' : String(l))).join(',');

/** `[autoscale] collect lag=1234 replicas 1→3 (hpa: ceil(1234/500)=3)`; several triggers: `lag=1234,5`. */
export function formatDecision(target: string, d: Decision): string {
  const lag = `lag=${lagText(d.lags)}`;
  const replicas = d.to === d.from ? `replicas ${d.to}` : `replicas ${d.from}→${d.to}`;
  return `[autoscale] ${target} ${lag} ${replicas} (${d.reason})`;
}

function ago(iso: string | undefined, now: number): string {
  if (!iso) return '-';
  const s = Math.round((now - Date.parse(iso)) / 1000);
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.floor(s / 60)}m${s % 60}s ago` : `${Math.floor(s / 3600)}h ago`;
}

/** Human-readable table of a snapshot. */
export function formatStatus(snapshot: StatusSnapshot, now = Date.now()): string {
  const rows = snapshot.scaledObjects.map((s) => [
    s.target,
    String(s.replicas),
    `${s.minReplicaCount}..${s.maxReplicaCount}`,
    s.lag === null ? (s.error ? 'error' : '?') : lagText(s.triggers.map((t) => t.lag)),
    s.triggers.map((t) => t.lagThreshold).join(','),
    s.active ? 'yes' : 'no',
    ago(s.lastScale?.at, now),
    s.error ? `error: ${s.error}` : (s.lastDecision?.reason ?? '-'),
  ]);
  const head = ['FUNCTION', 'REPLICAS', 'MIN..MAX', 'LAG', 'THRESHOLD', 'ACTIVE', 'LAST SCALE', 'LAST DECISION'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [
    `autoscaler pid ${snapshot.pid}, started ${snapshot.startedAt}, ` +
      (snapshot.stoppedAt ? `stopped ${ago(snapshot.stoppedAt, now)}` : `updated ${ago(snapshot.updatedAt, now)}`),
    line(head),
    ...rows.map(line),
  ].join('\n');
}

/** Atomic write (tmp + rename) so a reader never sees half a file. */
export async function writeStatusFile(path: string, snapshot: StatusSnapshot): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(snapshot, null, 2) + '\n');
  await rename(tmp, path);
}

export function readStatusFile(path: string): StatusSnapshot {
  return JSON.parse(readFileSync(path, 'utf8')) as StatusSnapshot;
}
