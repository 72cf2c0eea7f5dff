import type { z } from 'zod';
import { dcgmRow, type Sample } from '../../shared/schemas.ts';
import type { Label } from './proto.ts';

// A Prometheus series (its label set) → the row fields ingest stores for a DCGM CSV row, checked
// by the same zod rules (dcgmRow without timestamp and value, which are per sample).

/** The CSV row fields a series determines; timestamp and value come from each sample. */
const seriesRow = dcgmRow.omit({ timestamp: true, value: true });
export type SeriesFields = z.output<typeof seriesRow>;

export type SeriesResult = { ok: true; fields: SeriesFields } | { ok: false; reason: 'no_uuid' | 'invalid'; problem: string };

// Characters that would break the `key="value",…` form labels_raw has in DCGM CSVs (and that
// ClickHouse splits into the labels map). Classic Prometheus names never contain them.
const BAD_NAME = /[=,"\\\s]/;

/** A label value as the exposition format writes it between quotes. */
const escapeValue = (v: string) => (/[\\"\n]/.test(v) ? v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`)) : v);

/**
 * `key="value",…` sorted by name: the labels_raw form of the DCGM CSVs (checked against the
 * bundled sample). Prometheus sends labels sorted; a client that does not is sorted here.
 */
export function labelsRaw(labels: readonly Label[]): string {
  let sorted = labels;
  for (let i = 1; i < labels.length; i++) {
    if (labels[i - 1].name > labels[i].name) {
      sorted = [...labels].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      break;
    }
  }
  let out = '';
  for (let i = 0; i < sorted.length; i++) out += `${i ? ',' : ''}${sorted[i].name}="${escapeValue(sorted[i].value)}"`;
  return out;
}

/**
 * Maps a series the way ingest maps a CSV row: metric_name ← `__name__`, uuid ← `UUID`,
 * gpu_id ← `gpu`, device, modelName, Hostname ← `Hostname` or (newer exporters) `hostname`,
 * container/pod/namespace, labels_raw ← every label. A series without a UUID is not GPU
 * telemetry and is dropped by the caller.
 */
export function mapSeries(labels: readonly Label[]): SeriesResult {
  const named = checkNames(labels);
  return named ?? mapChecked(labels, labelsRaw(labels));
}

/** A problem with the label names, or undefined when they are usable (then labels_raw is unambiguous). */
function checkNames(labels: readonly Label[]): SeriesResult | undefined {
  // A pairwise scan is fastest for the usual dozen labels; a set keeps a hostile series with
  // millions of labels linear.
  const seen = labels.length > 16 ? new Set<string>() : undefined;
  for (let i = 0; i < labels.length; i++) {
    const name = labels[i].name;
    if (name === '' || BAD_NAME.test(name)) return { ok: false, reason: 'invalid', problem: 'a label name is empty or contains =, comma, quote, backslash or whitespace' };
    let twice = false;
    if (seen) twice = seen.size === seen.add(name).size;
    else for (let j = 0; j < i && !twice; j++) twice = labels[j].name === name;
    if (twice) return { ok: false, reason: 'invalid', problem: `label ${name.slice(0, 64)} appears twice` };
  }
  return undefined;
}

function mapChecked(labels: readonly Label[], raw: string): SeriesResult {
  const row: Record<string, string> = {
    metric_name: '', gpu_id: '', device: '', uuid: '', modelName: '', Hostname: '', container: '', pod: '', namespace: '', labels_raw: raw,
  };
  let lowerHostname = '';
  for (const { name, value } of labels) {
    switch (name) {
      case '__name__': row.metric_name = value; break;
      case 'UUID': row.uuid = value; break;
      case 'gpu': row.gpu_id = value; break;
      case 'hostname': lowerHostname = value; break;
      case 'device': case 'modelName': case 'Hostname': case 'container': case 'pod': case 'namespace': row[name] = value; break;
    }
  }
  if (!row.uuid) return { ok: false, reason: 'no_uuid', problem: 'the series has no UUID label (not a DCGM GPU series)' };
  row.Hostname ||= lowerHostname;
  const parsed = seriesRow.safeParse(row);
  if (!parsed.success) {
    return { ok: false, reason: 'invalid', problem: parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ') };
  }
  return { ok: true, fields: parsed.data };
}

/**
 * mapSeries with the results kept per label set: a scraper sends the same series every interval,
 * so the row rules run once per series instead of once per sample. Bounded: emptied when full.
 */
const MAX_CACHED_KEY = 16_384;

export class SeriesCache {
  private readonly results = new Map<string, SeriesResult>();
  /** `maxEntries` 0 turns the cache off. */
  constructor(private readonly maxEntries: number) {}

  get size(): number {
    return this.results.size;
  }

  map(labels: readonly Label[]): SeriesResult {
    const named = checkNames(labels);
    if (named) return named;
    const raw = labelsRaw(labels);
    let result = this.results.get(raw);
    if (!result) {
      result = mapChecked(labels, raw);
      // Oversized label sets are invalid anyway; they are not worth memory.
      if (raw.length > MAX_CACHED_KEY || this.maxEntries === 0) return result;
      if (this.results.size >= this.maxEntries) this.results.clear();
      this.results.set(raw, result);
    }
    return result;
  }
}

/** One sample of a mapped series (a fresh object: the encoder may keep it). */
export function sampleOf(f: SeriesFields, timestamp: number, value: number): Sample {
  return {
    timestamp, metric_name: f.metric_name, gpu_id: f.gpu_id, device: f.device, uuid: f.uuid, modelName: f.modelName, Hostname: f.Hostname,
    container: f.container, pod: f.pod, namespace: f.namespace, value, labels_raw: f.labels_raw,
  };
}
