import { DCGM_COLUMNS } from '../../shared/schemas.ts';

// Small DCGM CSV files for tests, for GPUs that are not in the bundled fixture.

export const HEADER = DCGM_COLUMNS.join(',');

/** One valid row of GPU `uuid` at second `i` of 2026-01-0x. */
export const syntheticRow = (uuid: string, i: number, value: number | string = 40 + i) =>
  `"2026-01-0${1 + (i % 9)}T00:00:${String(i % 60).padStart(2, '0')}Z","DCGM_FI_DEV_GPU_TEMP","0","nvidia0","${uuid}","NVIDIA H100 80GB HBM3","host-x","","","","${value}","UUID=""${uuid}"""`;

/** A valid CSV of `rows` rows, one GPU `<prefix>-<i>` per row. */
export function syntheticCsv(prefix: string, rows: number): string {
  const lines = [HEADER];
  for (let i = 0; i < rows; i++) lines.push(syntheticRow(`${prefix}-${i}`, i));
  return lines.join('\n') + '\n';
}
