import { createWriteStream, readFileSync } from 'node:fs';
import { once } from 'node:events';

// Builds a large DCGM CSV from the real sample: replica k shifts every timestamp by k minutes and
// gives every GPU a distinct uuid (in the uuid column and inside labels_raw), so the result looks
// like k scrapes of k different clusters rather than one file repeated.

export async function generateCsv(sampleFile: string, outFile: string, minRows: number): Promise<{ rows: number; bytes: number }> {
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
  for (let k = 0; k < copies; k++) {
    const tag = k.toString(16).padStart(8, '0');
    const copy = body
      .replace(/GPU-[0-9a-f]{8}-/g, `GPU-${tag}-`)
      .replace(/2025-07-18T20:42:3(\d)Z/g, (_m, s: string) => new Date(base + k * 60_000 + (Number(s) - 4) * 1000).toISOString().replace('.000Z', 'Z'));
    await write(copy);
  }
  out.end();
  await once(out, 'finish');
  return { rows: copies * rowsPerCopy, bytes };
}
