import { readFileSync, writeFileSync } from 'node:fs';

// What the benchmarks read about a process from /proc: CPU time used and peak RSS.

/** Peak resident set size (VmHWM) in MiB. */
export function peakRssMiB(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Resets a process's peak RSS to its current RSS (Linux ≥ 4.0: write 5 to clear_refs). */
export function resetPeakRss(pid: number | undefined): void {
  if (!pid) return;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    // Not permitted (another user's process): the peak then covers the process's whole life.
  }
}

/** User+system CPU seconds a process has used so far. */
export function cpuSeconds(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100 Hz)
  } catch {
    return NaN;
  }
}
