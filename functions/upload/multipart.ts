import busboy from 'busboy';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { HttpError } from '../../shared/http.ts';
import { printableName } from '../../shared/schemas.ts';

// The `file` part of a multipart/form-data body, streamed. busboy reports through events; they
// are queued and consumed by one generator, so every problem surfaces as an error of the bytes'
// iteration (a 400 naming it) and no promise can reject unobserved. The form is accepted only
// when it ends cleanly after exactly one file part, named `file`.

type FormEvent =
  | { kind: 'file'; field: string; stream: Readable; filename?: string }
  | { kind: 'limit'; what: string }
  | { kind: 'error'; error: unknown }
  | { kind: 'end' };

const bad = (message: string) => new HttpError(400, 'invalid_multipart', message);

/** busboy's own errors (fixed texts) in words a client can act on; anything else is rethrown as is. */
function busboyProblem(e: unknown, sawPart: boolean): unknown {
  const message = e instanceof Error ? e.message : '';
  if (message === 'Multipart: Boundary not found') return bad('multipart/form-data needs a boundary parameter in Content-Type');
  if (message === 'Malformed content type') return bad('the multipart Content-Type header is malformed');
  if (message === 'Malformed part header') return bad('a part of the multipart form has a malformed header');
  if (message === 'Unexpected end of form' || message === 'Unexpected end of file') {
    return bad(
      sawPart
        ? 'the multipart form ends before its closing boundary (truncated body?)'
        : 'no part with the boundary given in Content-Type was found: the body is not that multipart form',
    );
  }
  return e;
}

export interface MultipartFile {
  /** The bytes of the `file` part; ends only once the whole form has ended well. */
  chunks(body: Readable): AsyncGenerator<Buffer>;
  filename(): string | undefined;
}

/** Checks the form's Content-Type (400 without a boundary) and prepares the parser. */
export function multipartFile(headers: IncomingHttpHeaders): MultipartFile {
  let bb: busboy.Busboy;
  try {
    bb = busboy({
      headers,
      // Filenames in UTF-8 (what browsers and curl send), not latin1.
      defParamCharset: 'utf8',
      limits: { fields: 20, fieldSize: 64 * 1024, fieldNameSize: 200, parts: 40, headerPairs: 32 },
    });
  } catch (e) {
    throw busboyProblem(e, false);
  }
  let filename: string | undefined;
  const queue: FormEvent[] = [];
  let wake: (() => void) | undefined;
  const push = (e: FormEvent) => {
    queue.push(e);
    wake?.();
  };
  const next = async (): Promise<FormEvent> => {
    while (queue.length === 0) await new Promise<void>((r) => (wake = r));
    wake = undefined;
    return queue.shift()!;
  };
  bb.on('file', (field, stream, info) => {
    // busboy destroys an unfinished file stream with an error when the form breaks; a stream
    // nobody iterates any more must not turn that into an uncaught 'error' event.
    stream.on('error', () => undefined);
    push({ kind: 'file', field, stream, filename: info.filename });
  });
  bb.on('field', () => undefined);
  bb.on('partsLimit', () => push({ kind: 'limit', what: 'parts (at most 40)' }));
  bb.on('fieldsLimit', () => push({ kind: 'limit', what: 'fields (at most 20)' }));
  bb.on('error', (error) => push({ kind: 'error', error }));
  bb.on('close', () => push({ kind: 'end' }));

  async function* chunks(body: Readable): AsyncGenerator<Buffer> {
    let sawPart = false;
    let ended = false;
    body.once('error', (e) => bb.destroy(e));
    body.pipe(bb);
    try {
      // Up to the `file` part: other file parts are refused (they would otherwise be dropped unseen).
      for (;;) {
        const ev = await next();
        if (ev.kind === 'file') {
          sawPart = true;
          if (ev.field !== 'file') {
            ev.stream.resume();
            throw bad(`the form has a file part named ${JSON.stringify(printableName(ev.field, 'a field name'))} before "file": send the CSV as the only file part, named "file"`);
          }
          filename = ev.filename;
          try {
            for await (const chunk of ev.stream) yield chunk as Buffer;
          } catch (e) {
            throw busboyProblem(e, true);
          }
          break;
        }
        if (ev.kind === 'limit') throw bad(`the form has too many ${ev.what}`);
        if (ev.kind === 'error') throw busboyProblem(ev.error, sawPart);
        throw bad('the multipart form has no "file" field: send the CSV as a file part named "file"');
      }
      // After it: the form must end cleanly, with no second file.
      for (;;) {
        const ev = await next();
        if (ev.kind === 'file') {
          ev.stream.resume();
          throw bad(`the form has more than one file part (another one is named ${JSON.stringify(printableName(ev.field, 'a field name'))}): send one CSV, in the part named "file"`);
        }
        if (ev.kind === 'limit') throw bad(`the form has too many ${ev.what}`);
        if (ev.kind === 'error') throw busboyProblem(ev.error, true);
        ended = true;
        return;
      }
    } finally {
      if (!ended) {
        // Stop parsing; the caller discards the rest of the body.
        body.unpipe(bb);
        bb.destroy();
      }
    }
  }

  return { chunks, filename: () => filename };
}
