import { connect } from 'node:net';

// HTTP at the byte level, for requests fetch cannot send (a lying Content-Length, a body cut off,
// headers that never end) and to see exactly what the server answers before it closes.

export interface RawAnswer {
  /** Status of the first response, if one arrived. */
  status?: number;
  /** Body of that response (as text). */
  body: string;
  /** The server closed the connection. */
  closed: boolean;
  /** When the answer (or the close) came, ms after the request was sent. */
  ms: number;
}

export interface RawStep {
  /** Bytes to send. */
  send?: Buffer | string;
  /** Pause before the next step. */
  waitMs?: number;
  /** Drop the connection (a client that goes away mid-request). */
  close?: boolean;
}

/** Sends the steps in order, then waits for the server to answer and close (or `timeoutMs`). */
export function rawHttp(port: number, steps: RawStep[], timeoutMs = 20_000): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const started = Date.now();
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text);
      const split = text.indexOf('\r\n\r\n');
      resolve({ status: status ? Number(status[1]) : undefined, body: split >= 0 ? text.slice(split + 4) : '', closed, ms: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('data', (d) => chunks.push(d));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.on('connect', async () => {
      for (const step of steps) {
        if (done) return;
        if (step.send !== undefined) socket.write(step.send);
        if (step.waitMs) await new Promise((r) => setTimeout(r, step.waitMs));
        if (step.close) return finish(true);
      }
    });
  });
}
