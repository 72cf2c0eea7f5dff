import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError } from './api.ts';

// Small shared pieces: a loader hook that keeps "not available" (route missing) apart from
// errors and from empty data, and their rendering.

export type Loaded<T> = { status: 'loading' } | { status: 'ok'; data: T } | { status: 'unavailable'; path: string } | { status: 'error'; message: string };

export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): [Loaded<T>, () => void] {
  const [value, setValue] = useState<Loaded<T>>({ status: 'loading' });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setValue({ status: 'loading' });
    load().then(
      (data) => live && setValue({ status: 'ok', data }),
      (e: unknown) => {
        if (!live) return;
        if (e instanceof ApiError && e.missingRoute) setValue({ status: 'unavailable', path: e.path.split('?')[0] });
        else setValue({ status: 'error', message: e instanceof Error ? e.message : String(e) });
      },
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return [value, () => setTick((t) => t + 1)];
}

export function Show<T>(props: { value: Loaded<T>; what: string; children: (data: T) => ComponentChildren }) {
  const v = props.value;
  if (v.status === 'loading') return <p class="muted">Loading {props.what}…</p>;
  if (v.status === 'unavailable')
    return (
      <p class="unavailable" data-unavailable={v.path}>
        {props.what}: not available on this server ({v.path} is not served by this query function version).
      </p>
    );
  if (v.status === 'error') return <p class="error">{props.what}: {v.message}</p>;
  return <>{props.children(v.data)}</>;
}

export const fmtTime = (iso: string | null | undefined) => (iso ? iso.replace('T', ' ').replace(/\.000Z$|Z$/, ' UTC') : '–');
export const fmtNum = (n: number) => n.toLocaleString('en-US');

export function FlagBadges(props: { flags: string[] }) {
  return (
    <span class="flags">
      {props.flags.map((f) => (
        <span class={`badge badge-${f.replace(/[^a-z_]/gi, '')}`} title={f}>
          {f}
        </span>
      ))}
    </span>
  );
}
