import { connect, createServer, type Socket } from 'node:net';

// A tiny real TCP proxy in front of a real server that reproduces the keep-alive race
// deterministically. A server that closes an idle connection after its keep-alive timeout can do
// so just as the client sends the next request on it; the client then gets no answer ("socket
// hang up"). Here a request arriving on a connection idle for at least `idleCloseMs` (or the
// requests `drop` picks) is answered that way: the connection is closed without forwarding it.

export interface KeepAliveProxy {
  url: string;
  /** Requests closed unanswered so far. */
  dropped(): number;
  /** Client connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

export async function startKeepAliveProxy(opts: {
  upstreamPort: number;
  /** The modelled server keep-alive timeout. */
  idleCloseMs?: number;
  /** Drop the n-th request (1-based) of a connection. */
  drop?: (n: number) => boolean;
}): Promise<KeepAliveProxy> {
  let dropped = 0;
  let connections = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    connections++;
    const upstream = connect(opts.upstreamPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    let lastActivity = Date.now();
    let requests = 0;
    // A request starts with the first client bytes after a response (or on a new connection).
    let awaitingRequest = true;
    client.on('data', (d) => {
      if (awaitingRequest) {
        awaitingRequest = false;
        requests++;
        const idle = Date.now() - lastActivity;
        if ((opts.idleCloseMs !== undefined && requests > 1 && idle >= opts.idleCloseMs) || opts.drop?.(requests)) {
          dropped++;
          client.destroy();
          upstream.destroy();
          return;
        }
      }
      lastActivity = Date.now();
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      lastActivity = Date.now();
      awaitingRequest = true;
      client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    dropped: () => dropped,
    connections: () => connections,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
