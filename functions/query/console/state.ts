import type uPlot from 'uplot';

// What the page has drawn and loaded, kept on window for the browser tests and the benchmark
// (they check plotted data, not only that a canvas exists).

export interface ConsoleState {
  page: string;
  charts: Record<string, { plot: uPlot; renderMs: number }>;
  fleet: { gpus: number | null; rows: number; loadMs: number | null };
  live: { events: number; samples: number; state: string };
  upload: { state: string | null; progress: number[] };
}

export const state: ConsoleState = {
  page: '',
  charts: {},
  fleet: { gpus: null, rows: 0, loadMs: null },
  live: { events: 0, samples: 0, state: 'closed' },
  upload: { state: null, progress: [] },
};

(window as unknown as { __gputel: ConsoleState }).__gputel = state;
