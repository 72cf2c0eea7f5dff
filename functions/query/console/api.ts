// The console's HTTP client: same-origin API calls with the session's bearer token, typed errors
// (so a page can tell "route not available" from "no data"), and a Server-Sent-Events reader over
// fetch (EventSource cannot send an Authorization header).

const TOKEN_KEY = 'gputel.token';

export const token = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (t: string) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly path: string,
  ) {
    super(message);
  }
  /** The server has no such route (an older query function): the feature is not available. */
  get missingRoute(): boolean {
    // An older route without the parameters this console sends (e.g. paging) counts as missing.
    return (this.status === 404 && this.code === 'not_found') || (this.status === 400 && /is not a known parameter/.test(this.message));
  }
}

export const authHeaders = (): Record<string, string> => {
  const t = token.get();
  return t ? { authorization: `Bearer ${t}` } : {};
};

let onUnauthorized: () => void = () => {};
export const setUnauthorizedHandler = (f: () => void) => (onUnauthorized = f);

export async function api<T>(path: string, init: RequestInit = {}, base = ''): Promise<T> {
  const res = await fetch(base + path, { ...init, headers: { ...authHeaders(), ...(init.headers as Record<string, string>) } });
  if (!res.ok) {
    let code = 'http_error';
    let message = `HTTP ${res.status}`;
    try {
      const body = (await res.json()) as { error?: { code: string; message: string } };
      if (body.error) ({ code, message } = body.error);
    } catch {
      /* not JSON */
    }
    if (res.status === 401) onUnauthorized();
    throw new ApiError(res.status, code, message, path);
  }
  return (await res.json()) as T;
}

export const qs = (params: Record<string, string | number | undefined | null | (string | number)[]>) => {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    for (const x of Array.isArray(v) ? v : [v]) u.append(k, String(x));
  }
  const s = u.toString();
  return s ? `?${s}` : '';
};

export interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

/**
 * Reads an SSE stream until `signal` aborts; reconnects after `retry` ms with Last-Event-ID, as
 * EventSource would.
 */
export async function sse(path: string, onEvent: (e: SseEvent) => void, signal: AbortSignal, onState?: (s: string) => void): Promise<void> {
  let lastId: string | undefined;
  let retry = 2000;
  while (!signal.aborted) {
    try {
      const res = await fetch(path, { headers: { ...authHeaders(), accept: 'text/event-stream', ...(lastId ? { 'last-event-id': lastId } : {}) }, signal });
      if (!res.ok || !res.body) throw new ApiError(res.status, 'http_error', `HTTP ${res.status}`, path);
      onState?.('open');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut: number;
        while ((cut = buf.indexOf('\n\n')) !== -1) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const ev: SseEvent = { event: 'message', data: '' };
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const i = line.indexOf(':');
            const field = i === -1 ? line : line.slice(0, i);
            const val = i === -1 ? '' : line.slice(i + 1).replace(/^ /, '');
            if (field === 'id') ev.id = val;
            else if (field === 'event') ev.event = val;
            else if (field === 'data') data.push(val);
            else if (field === 'retry' && /^\d+$/.test(val)) retry = Number(val);
          }
          if (data.length === 0) continue;
          ev.data = data.join('\n');
          if (ev.id) lastId = ev.id;
          onEvent(ev);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ApiError && (e.status === 404 || e.status === 401 || e.status === 403)) {
        onState?.(`unavailable (${e.status})`);
        return;
      }
    }
    onState?.('reconnecting');
    await new Promise((r) => setTimeout(r, retry));
  }
}
