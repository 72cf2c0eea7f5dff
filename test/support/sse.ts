// A Server-Sent Events client for tests: records every event (and comment lines) of a stream
// read with fetch, until closed.

export interface SseRecord {
  id?: string;
  event: string;
  data: string;
}

export interface SseClient {
  status: number;
  events: SseRecord[];
  comments: string[];
  close(): void;
  /** Resolves when the stream ended (closed by either side). */
  ended: Promise<void>;
}

export async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
  const ac = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: ac.signal });
  const client: SseClient = { status: res.status, events: [], comments: [], close: () => ac.abort(), ended: Promise.resolve() };
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    return client;
  }
  const body = res.body;
  client.ended = (async () => {
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of body) {
        buf += decoder.decode(chunk, { stream: true });
        let cut: number;
        while ((cut = buf.indexOf('\n\n')) !== -1) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const rec: SseRecord = { event: 'message', data: '' };
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) client.comments.push(line.slice(1).trim());
            else if (line.startsWith('id: ')) rec.id = line.slice(4);
            else if (line.startsWith('event: ')) rec.event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length) client.events.push({ ...rec, data: data.join('\n') });
        }
      }
    } catch {
      // aborted
    }
  })();
  return client;
}
