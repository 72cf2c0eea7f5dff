import { parse, type Options } from 'csv-parse';
import { Readable } from 'node:stream';
import { EventLoopPacer } from '../../shared/heartbeat.ts';
import { fieldBreaks, malformedReason, validateRecord } from './rows.ts';
import type { PartOutput } from './output.ts';

// The reference path: csv-parse and the zod row schema, as ingest parsed every part before the
// byte-level scanner. It handles the parts the scanner does not take (broken quoting, bare CRs,
// mixed line ends) and is what the scanner's output is tested against.

export async function referenceRows(bytes: Buffer, indexes: readonly number[], firstLine: number, out: PartOutput): Promise<void> {
  const lineBase = firstLine - 1;
  // csv-parse's line counter runs ahead of physical (LF) lines by every CR inside fields and
  // points at a record's last line; corrected so lines match the file however it was split.
  let extraCr = 0;
  const parser = Readable.from([bytes]).pipe(
    parse({
      relax_column_count: true,
      skip_empty_lines: true,
      skip_records_with_error: true,
      on_skip: (err: unknown) => {
        const e = err as { code?: string; lines?: number } | undefined;
        out.reject(lineBase + (e?.lines ?? 0) - extraCr, malformedReason(e?.code));
        return undefined;
      },
      on_record: (record: string[], context: { lines: number }) => {
        const { cr, lf } = fieldBreaks(record);
        const line = lineBase + context.lines - extraCr - cr - lf;
        extraCr += cr;
        return { record, line };
      },
    } as unknown as Options),
  );
  // csv-parse reads data already in memory without returning to the event loop: pause now and
  // then so the worker's heartbeats go out during a long part.
  const pacer = new EventLoopPacer();
  for await (const { record, line } of parser as AsyncIterable<{ record: string[]; line: number }>) {
    if (pacer.due()) await pacer.pause();
    const r = validateRecord(record, indexes);
    if (!r.ok) out.reject(line, r.reason);
    else await out.add(r.sample, line);
  }
}
