import { render } from 'preact';
import { Chart, toColumns, type Point } from './chart.tsx';
import { state } from './state.ts';

// Benchmark entry (test/bench/console.ts bundles it; not part of the console): draws the
// console's own Chart component with n points and reports the time to the first painted frame.

async function frame(): Promise<void> {
  await new Promise((r) => requestAnimationFrame(() => r(undefined)));
}

async function renderPoints(n: number, width = 1336): Promise<{ points: number; buildMs: number; firstPaintMs: number; setDataMs: number; plotted: number }> {
  const t0 = Date.parse('2025-07-18T00:00:00Z');
  const points: Point[] = Array.from({ length: n }, (_, i) => {
    const v = 50 + 40 * Math.sin(i / 500) + ((i * 7919) % 13);
    return { t: new Date(t0 + i * 1000).toISOString(), count: 1, min: v - 3, max: v + 3, avg: v, last: v };
  });
  const host = document.createElement('div');
  document.body.append(host);
  const a = performance.now();
  const data = toColumns(points);
  const b = performance.now();
  render(<Chart id="bench" title={`${n} points`} data={data} width={width} />, host);
  // Preact runs the effect that creates the uPlot after the render; then uPlot paints.
  while (!state.charts.bench) await frame();
  await frame();
  const c = performance.now();
  const plot = state.charts.bench.plot;
  const d = performance.now();
  plot.setData(toColumns(points.map((p) => ({ ...p, avg: p.avg + 1 }))) as never);
  await frame();
  const e = performance.now();
  const plotted = plot.data[0].length;
  render(null, host);
  host.remove();
  return { points: n, buildMs: b - a, firstPaintMs: c - b, setDataMs: e - d, plotted };
}

(window as unknown as { benchRender: typeof renderPoints }).benchRender = renderPoints;
