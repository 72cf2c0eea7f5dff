import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, type Stack } from './local/stack.ts';
import { startConsoleStack, uploadAndWait } from './local/console-stack.ts';
import { openBrowser, type Browser } from './support/browser.ts';
import { FIXTURE_CSV, fixtureRows } from './support/fixtures.ts';
import { HEADER } from './support/csv.ts';

// The console in a real headless Chromium (Debian's package, driven by playwright-core) against
// the real stack, with bearer tokens on. The sample goes in through the Upload page; the other
// pages then show it. Plotted data is read from the page's own state (window.__gputel), not
// inferred from a canvas. Screenshots of every page land in docs/screenshots/.

const TOKEN = 'console-test-token';
const GPU = 'GPU-016f5163-a200-f674-2110-97949df1c49a';
const SHOTS = join(repoRoot, 'docs', 'screenshots');

let stack: Stack;
let b: Browser;
/** Routes of the contract this query function does not serve (yet): their pages show "not available". */
const missing = new Set<string>();

async function routeMissing(path: string): Promise<boolean> {
  const r = await fetch(`${stack.queryUrl}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const body = (await r.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  const gone = (r.status === 404 && body.error?.code === 'not_found' && /no route/.test(body.error.message)) || (r.status === 400 && /is not a known parameter/.test(body.error?.message ?? ''));
  if (gone) missing.add(path.split('?')[0]);
  return gone;
}

const gstate = <T>(expr: string) => b.page.evaluate(`(() => { const s = window.__gputel; return ${expr}; })()`) as Promise<T>;
const shot = (name: string) => b.page.screenshot({ path: join(SHOTS, `${name}.png`) });

beforeAll(async () => {
  stack = await startConsoleStack({ env: { API_TOKENS: `${TOKEN}:upload+read`, LIVE_HEARTBEAT_MS: '1000' } });
  b = await openBrowser();
}, 120_000);
afterAll(async () => {
  await b?.close();
  await stack?.stop();
});

describe('console in Chromium', () => {
  it('asks for the token and keeps it in sessionStorage only', async () => {
    await b.page.goto(`${stack.queryUrl}/#/upload`);
    await b.page.fill('#token', TOKEN);
    await b.page.click('form.token button');
    await b.page.waitForSelector('#dropzone');
    expect(await b.page.evaluate(() => sessionStorage.getItem('gputel.token'))).toBe(TOKEN);
    expect(await b.page.evaluate(() => Object.keys(localStorage))).toEqual([]);
  });

  it('uploads the sample through the page: progress, then done with the counts and links to its GPUs', async () => {
    await b.page.setInputFiles('#file', FIXTURE_CSV);
    await b.page.waitForSelector('#upload-status[data-state="done"]', { timeout: 60_000 });
    const progress = await gstate<number[]>('s.upload.progress');
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)).toBe(readFileSync(FIXTURE_CSV).length);
    expect(await b.page.textContent('#rows-accepted')).toBe('2,470');
    expect(await b.page.textContent('#rows-stored')).toBe('2,470');
    expect(await b.page.textContent('#rows-rejected')).toBe('0');
    expect(await b.page.locator('ul.links a').count()).toBe(247);
    await shot('upload');
  });

  it('fleet shows the 247 GPUs of the sample', async (ctx) => {
    await b.page.goto(`${stack.queryUrl}/#/fleet`);
    const noHosts = await routeMissing('/api/v1/hosts?limit=1');
    const noPaging = await routeMissing('/api/v1/gpus?limit=1');
    // The top-N and anomaly cards show "not available" on their own when their routes are missing.
    await routeMissing('/api/v1/metrics/DCGM_FI_DEV_GPU_TEMP/top');
    await routeMissing('/api/v1/metrics/DCGM_FI_DEV_GPU_UTIL/top');
    await routeMissing('/api/v1/anomalies');
    if (noHosts || noPaging) {
      await b.page.waitForSelector('.unavailable');
      await shot('fleet');
      ctx.skip(`the query function lacks ${[...missing].join(', ')}: the page shows "not available"`);
    }
    await b.page.waitForSelector('#fleet-total [data-gpus]');
    expect(await b.page.getAttribute('#fleet-total [data-gpus]', 'data-gpus')).toBe('247');
    // Paged: 100 + 100 + 47 rows, every uuid once.
    const seen = new Set<string>();
    let first = '';
    for (let page = 0; page < 3; page++) {
      // The next page is on screen: another first row, and its row count.
      await b.page.waitForFunction(
        ([n, prev]) => {
          const rows = document.querySelectorAll('table.gpus tbody tr');
          return rows.length === n && rows[0].getAttribute('data-uuid') !== prev;
        },
        [page < 2 ? 100 : 47, first] as const,
      );
      const uuids = await b.page.$$eval('table.gpus tbody tr', (rows) => rows.map((r) => r.getAttribute('data-uuid')!));
      first = uuids[0];
      for (const u of uuids) seen.add(u);
      if (page < 2) await b.page.click('#next-page');
    }
    expect(seen.size).toBe(247);
    await b.page.click('header nav a[href="#/upload"]');
    await b.page.click('header nav a[href="#/fleet"]');
    await b.page.waitForSelector('table.gpus tbody tr');
    await b.page.evaluate(() => scrollTo(0, 0));
    await b.page.waitForTimeout(1500); // sparklines
    await shot('fleet');
  });

  it("GPU page draws one chart per metric with the sample's points", async (ctx) => {
    await b.page.goto(`${stack.queryUrl}/#/gpu/${GPU}`);
    const expected = fixtureRows().filter((r) => r.uuid === GPU);
    if (await routeMissing(`/api/v1/gpus/${GPU}/series?metric=DCGM_FI_DEV_GPU_UTIL`)) {
      await b.page.waitForSelector('.unavailable');
      await shot('gpu');
      ctx.skip(`the query function lacks the series route: the page shows "not available"`);
    }
    await b.page.waitForFunction((n) => Object.keys((window as any).__gputel.charts).length === n, expected.length);
    const plotted = await gstate<Record<string, { xs: number[]; avg: number[]; min: number[]; max: number[] }>>(
      `Object.fromEntries(Object.entries(s.charts).map(([m, c]) => [m, { xs: c.plot.data[0], avg: c.plot.data[1], min: c.plot.data[2], max: c.plot.data[3] }]))`,
    );
    expect(Object.keys(plotted).sort()).toEqual(expected.map((r) => r.metric_name).sort());
    for (const r of expected) {
      const p = plotted[r.metric_name];
      expect(p.xs).toEqual([Date.parse(r.timestamp) / 1000]);
      expect(p.avg).toEqual([Number(r.value)]);
      expect(p.min).toEqual([Number(r.value)]);
      expect(p.max).toEqual([Number(r.value)]);
    }
    expect(await b.page.locator('.chart canvas').count()).toBeGreaterThanOrEqual(expected.length);
    await shot('gpu');

    // Drag across the sample's instant on a chart: the window is refetched and its raw rows listed.
    const over = b.page.locator('.chart[data-metric="DCGM_FI_DEV_GPU_UTIL"] .u-over');
    await over.scrollIntoViewIfNeeded();
    const box = (await over.boundingBox())!;
    const seriesWindows = () =>
      b.requests.filter((u) => u.includes(`/api/v1/gpus/${GPU}/series?`)).map((u) => {
        const q = new URL(u).searchParams;
        return Date.parse(q.get('end_time')!) - Date.parse(q.get('start_time')!);
      });
    const before = seriesWindows();
    await b.page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2);
    await b.page.mouse.down();
    await b.page.mouse.move(box.x + box.width * 0.7, box.y + box.height / 2, { steps: 5 });
    await b.page.mouse.up();
    await b.page.waitForSelector('table.raw tbody tr');
    expect(await b.page.$$eval('table.raw tbody tr td:nth-child(2)', (tds) => tds.map((t) => t.textContent).sort())).toEqual(expected.map((r) => r.metric_name).sort());
    // Refetched for the selected window (about 40 % of the data range), not the whole range.
    const after = seriesWindows();
    expect(after.length).toBeGreaterThan(before.length);
    expect(after.at(-1)!).toBeLessThan(before.at(-1)! * 0.6);
    expect(await b.page.locator('.toolbar button.on').count()).toBe(0); // a zoom window, no preset
  });

  it('a live point appears on the GPU page after an upload', async () => {
    if (!b.page.url().includes('#/gpu/')) await b.page.goto(`${stack.queryUrl}/#/gpu/${GPU}`);
    await b.page.waitForFunction(() => (window as any).__gputel.live.state === 'open');
    const before = await gstate<number>('s.live.samples');
    const ts = '2025-07-18T20:42:50.000Z';
    await uploadAndWait(
      stack,
      [HEADER, `"${ts}","DCGM_FI_DEV_GPU_UTIL","1","nvidia1","${GPU}","NVIDIA H100 80GB HBM3","mtv5-dgx1-hgpu-020","","","","93",""`].join('\n') + '\n',
      TOKEN,
    );
    await b.page.waitForFunction((n) => (window as any).__gputel.live.samples > n, before, { timeout: 15_000 });
    expect(await gstate<number>('s.live.samples')).toBe(before + 1);
    if (!missing.has(`/api/v1/gpus/${GPU}/series`)) {
      const util = await gstate<{ xs: number[]; avg: number[] }>(`({ xs: s.charts.DCGM_FI_DEV_GPU_UTIL.plot.data[0], avg: s.charts.DCGM_FI_DEV_GPU_UTIL.plot.data[1] })`);
      const i = util.xs.indexOf(Date.parse(ts) / 1000);
      expect(i).toBeGreaterThanOrEqual(0);
      expect(util.avg[i]).toBe(93);
      await shot('gpu-live');
    }
  });

  it('pipeline page shows lag per stream, parts waiting and dead letters', async () => {
    await b.page.goto(`${stack.queryUrl}/#/pipeline`);
    await b.page.waitForSelector('#parts-waiting');
    await b.page.waitForTimeout(4500); // a few polls for the history charts
    expect(await b.page.$$eval('table.consumers tbody tr', (rows) => rows.map((r) => r.getAttribute('data-stream')))).toEqual(['CSV_UPLOADS', 'TELEMETRY', 'ROLLUPS']);
    expect(await b.page.textContent('#parts-waiting')).toBe('0');
    expect(await b.page.textContent('#dead-letters')).toBe('0');
    expect(await b.page.locator('#no-autoscaler').count()).toBe(1);
    await shot('pipeline');
  });

  it('API reference: Swagger UI from local assets, try it out with the token', async () => {
    await b.page.goto(`${stack.queryUrl}/docs`);
    // tryItOutEnabled: the operation opens ready to execute.
    await b.page.click('#operations-default-listMetrics .opblock-summary');
    await b.page.click('#operations-default-listMetrics button.execute');
    const status = b.page.locator('#operations-default-listMetrics .live-responses-table tbody .response-col_status').first();
    await status.waitFor();
    expect((await status.textContent())?.trim()).toBe('200');
    expect(await b.page.locator('#operations-default-listMetrics .live-responses-table').textContent()).toContain('DCGM_FI_DEV_GPU_UTIL');
    await shot('docs');
  });

  it('no console errors and no request leaves the two origins', () => {
    const allowed = [stack.queryUrl, stack.uploadUrl];
    expect(b.requests.filter((u) => !u.startsWith('data:') && !allowed.some((o) => u.startsWith(`${o}/`)))).toEqual([]);
    // Only the answers of routes this query function does not serve yet (shown as "not available").
    const unexpected = b.errors.filter((e) => ![...missing].some((m) => e.includes(m)));
    expect(unexpected).toEqual([]);
  });
});
