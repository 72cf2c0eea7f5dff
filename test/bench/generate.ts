import { createWriteStream, readFileSync } from 'node:fs';
import { once } from 'node:events';

// Builds a large DCGM CSV from the real sample: replica k shifts every timestamp by k minutes and
// gives every GPU a distinct uuid (in the uuid column and inside labels_raw), so the result looks
// like k scrapes of k different clusters rather than one file repeated.
// shape 'series': the same 247 GPUs scraped on, copy k shifted by k × 10 s (the sample's rows of a
// GPU span 4 s), so every (GPU, metric) is a series with a sample every 10 s — the shape the
// rollups see in production (6 samples per 1-minute bucket), where 'fleets' gives each series one
// sample (every rollup row is one sample: their worst case).

export type CsvShape = 'fleets' | 'series';

/** `firstCopy`: the replica to start at, so that two files of one size hold different GPUs (fleets) or times (series). */
export async function generateCsv(sampleFile: string, outFile: string, minRows: number, shape: CsvShape = 'fleets', firstCopy = 0): Promise<{ rows: number; bytes: number; copies: number }> {
  const text = readFileSync(sampleFile, 'utf8');
  const nl = text.indexOf('\n');
  const header = text.slice(0, nl + 1);
  const body = text.slice(nl + 1);
  const rowsPerCopy = body.split('\n').filter(Boolean).length;
  const copies = Math.ceil(minRows / rowsPerCopy);
  const out = createWriteStream(outFile);
  let bytes = 0;
  const write = async (s: string) => {
    bytes += Buffer.byteLength(s);
    if (!out.write(s)) await once(out, 'drain');
  };
  await write(header);
  const base = Date.parse('2025-07-18T20:42:34Z');
  for (let k = firstCopy; k < firstCopy + copies; k++) {
    const tag = k.toString(16).padStart(8, '0');
    const shift = shape === 'series' ? k * 10_000 : k * 60_000;
    const copy = (shape === 'series' ? body : body.replace(/GPU-[0-9a-f]{8}-/g, `GPU-${tag}-`))
      .replace(/2025-07-18T20:42:(3\d|4\d)Z/g, (_m, s: string) => new Date(base + shift + (Number(s) - 34) * 1000).toISOString().replace('.000Z', 'Z'));
    await write(copy);
  }
  out.end();
  await once(out, 'finish');
  return { rows: copies * rowsPerCopy, bytes, copies };
}
