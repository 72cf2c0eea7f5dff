import { CloudEvent, ValidationError } from 'cloudevents';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NATS, fromNatsMsg, percentDecode, percentEncode, toNatsHeaders, type NatsMessage } from '../shared/cloudevents-nats.ts';
import { startNats, type NatsServer } from './support/servers.ts';

// The CloudEvents NATS protocol binding: header value percent-encoding, binary and structured
// content modes, case-insensitive header names, and a trip through a real nats-server.

const base = {
  id: 'upload-1.0',
  source: '/functions/upload',
  type: 'com.gputelemetry.csv.uploaded',
  subject: 'upload-1',
  time: '2025-07-18T20:42:34.123Z',
};

function body(m: NatsMessage): string {
  return Buffer.from(m.body).toString('utf8');
}

describe('percentEncode', () => {
  it('leaves printable ASCII other than `"` and `%` alone', () => {
    const printable = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i))
      .filter((c) => c !== '"' && c !== '%')
      .join('');
    expect(percentEncode(printable)).toBe(printable);
  });

  it('encodes space, double quote, percent and controls as upper-case %XY', () => {
    expect(percentEncode('a b')).toBe('a%20b');
    expect(percentEncode('say "hi"')).toBe('say%20%22hi%22');
    expect(percentEncode('100%')).toBe('100%25');
    expect(percentEncode('tab\there\nnl')).toBe('tab%09here%0Anl');
    expect(percentEncode('\x7f')).toBe('%7F');
  });

  it('encodes non-ASCII as its UTF-8 bytes', () => {
    expect(percentEncode('é')).toBe('%C3%A9');
    expect(percentEncode('€')).toBe('%E2%82%AC');
    expect(percentEncode('𝄞')).toBe('%F0%9D%84%9E'); // outside the BMP: one code point, four bytes
    expect(percentEncode('Zoë Ĝ')).toBe('Zo%C3%AB%20%C4%9C');
  });
});

describe('percentDecode', () => {
  it('inverts percentEncode', () => {
    for (const s of ['', 'plain', 'a b', '"quoted"', '100%', 'é€𝄞', ' \t\r\n', 'x%y%%z', 'mixed "é" 50% €']) {
      expect(percentDecode(percentEncode(s))).toBe(s);
    }
  });

  it('accepts lower-case hex', () => {
    expect(percentDecode('%c3%a9')).toBe('é');
    expect(percentDecode('a%2fb%2Fc')).toBe('a/b/c');
  });

  it('rejects byte sequences that are not UTF-8', () => {
    expect(() => percentDecode('%FF')).toThrow(ValidationError);
    expect(() => percentDecode('%C3')).toThrow(ValidationError); // truncated sequence
    expect(() => percentDecode('%C3%28')).toThrow(ValidationError); // bad continuation byte
    expect(() => percentDecode('%ED%A0%80')).toThrow(ValidationError); // surrogate code point
  });

  it('unescapes a double-quoted string first', () => {
    expect(percentDecode('"hello"')).toBe('hello');
    expect(percentDecode('"a \\"b\\" c"')).toBe('a "b" c');
    expect(percentDecode('"%C3%A9"')).toBe('é');
    expect(percentDecode('""')).toBe('');
  });

  it('keeps a `%` that does not start an escape', () => {
    expect(percentDecode('50%')).toBe('50%');
    expect(percentDecode('%zz')).toBe('%zz');
  });
});

describe('NATS.binary', () => {
  it('maps every attribute to a percent-encoded ce-* header, including ce-datacontenttype', () => {
    const event = new CloudEvent({
      ...base,
      datacontenttype: 'application/json',
      dataschema: 'https://example.com/schema',
      uploadid: 'upload 1 "é"',
      data: { uploadId: 'upload-1', part: 0 },
    });
    const msg = NATS.binary(event);
    expect(msg.headers).toEqual({
      'ce-id': 'upload-1.0',
      'ce-source': '/functions/upload',
      'ce-type': 'com.gputelemetry.csv.uploaded',
      'ce-subject': 'upload-1',
      'ce-time': '2025-07-18T20:42:34.123Z',
      'ce-specversion': '1.0',
      'ce-datacontenttype': 'application/json',
      'ce-dataschema': 'https://example.com/schema',
      'ce-uploadid': 'upload%201%20%22%C3%A9%22',
    });
    expect(msg.headers['content-type']).toBeUndefined();
    expect(JSON.parse(body(msg))).toEqual({ uploadId: 'upload-1', part: 0 });
  });

  it('sends text as UTF-8 and bytes unchanged', () => {
    const text = NATS.binary(new CloudEvent({ ...base, datacontenttype: 'text/plain', data: 'héllo\nworld' }));
    expect(body(text)).toBe('héllo\nworld');
    const bytes = Uint8Array.from([0, 1, 2, 0xff, 0x80]);
    const bin = NATS.binary(new CloudEvent({ ...base, datacontenttype: 'application/octet-stream', data: bytes }));
    expect([...bin.body]).toEqual([0, 1, 2, 0xff, 0x80]);
    expect(bin.headers['ce-data_base64']).toBeUndefined();
    expect(bin.headers['ce-data']).toBeUndefined();
  });

  it('sends an empty payload for an event without data', () => {
    const msg = NATS.binary(new CloudEvent(base));
    expect(msg.body.length).toBe(0);
    const back = NATS.toEvent(msg) as CloudEvent<unknown>;
    expect(back.data).toBeUndefined();
  });
});

function expectSameAttributes(back: CloudEvent<unknown>, event: CloudEvent<unknown>) {
  for (const k of ['id', 'type', 'source', 'subject', 'time', 'specversion', 'datacontenttype'] as const) {
    expect(back[k], k).toBe(event[k]);
  }
}

describe('round trip', () => {
  const cases: { name: string; event: () => CloudEvent<unknown> }[] = [
    { name: 'JSON data', event: () => new CloudEvent<unknown>({ ...base, datacontenttype: 'application/json', data: { a: [1, 2, { b: 'é' }], n: null } }) },
    { name: 'JSON data with parameters', event: () => new CloudEvent<unknown>({ ...base, datacontenttype: 'application/json; charset=utf-8', data: { ok: true } }) },
    { name: '+json media type', event: () => new CloudEvent<unknown>({ ...base, datacontenttype: 'application/vnd.gpu+json', data: [1, 'two'] }) },
    { name: 'text data', event: () => new CloudEvent<unknown>({ ...base, datacontenttype: 'text/tab-separated-values', data: 'a\tb\nc\\d\n€' }) },
    { name: 'byte data', event: () => new CloudEvent<unknown>({ ...base, datacontenttype: 'application/octet-stream', data: Uint8Array.from([0, 255, 10, 13, 34]) }) },
  ];

  for (const mode of ['binary', 'structured'] as const) {
    for (const c of cases) {
      it(`${mode} mode: ${c.name}`, () => {
        const event = c.event().cloneWith({ uploadid: 'u 1 "é" 100%', rows: '5000' } as never, false);
        const msg = NATS[mode](event);
        if (mode === 'structured') {
          expect(msg.headers).toEqual({ 'content-type': 'application/cloudevents+json' });
          expect(JSON.parse(body(msg)).id).toBe(base.id);
        }
        expect(NATS.isEvent(msg)).toBe(true);
        const back = NATS.toEvent(msg) as CloudEvent<unknown>;
        expectSameAttributes(back, event);
        expect(back.uploadid).toBe('u 1 "é" 100%');
        expect(back.rows).toBe('5000');
        if (event.data instanceof Uint8Array) {
          expect(back.data).toBeInstanceOf(Uint8Array);
          expect([...(back.data as Uint8Array)]).toEqual([...event.data]);
        } else {
          expect(back.data).toEqual(event.data);
        }
      });
    }
  }
});

describe('header names are case-insensitive', () => {
  it('reads binary-mode headers in any case', () => {
    const msg: NatsMessage = {
      headers: {
        'CE-ID': 'abc',
        'Ce-Source': '/x',
        'ce-TYPE': 't',
        'CE-SPECVERSION': '1.0',
        'Ce-Datacontenttype': 'application/json',
        'CE-MYEXT': 'a%20b',
      },
      body: Buffer.from('{"k":1}'),
    };
    expect(NATS.isEvent(msg)).toBe(true);
    const e = NATS.toEvent(msg) as CloudEvent<unknown>;
    expect(e.id).toBe('abc');
    expect(e.source).toBe('/x');
    expect(e.type).toBe('t');
    expect(e.datacontenttype).toBe('application/json');
    expect(e.myext).toBe('a b');
    expect(e.data).toEqual({ k: 1 });
  });

  it('recognises structured mode from Content-Type in any case', () => {
    const structured = NATS.structured(new CloudEvent({ ...base, data: { x: 1 } }));
    const msg: NatsMessage = { headers: { 'Content-Type': 'Application/CloudEvents+JSON; charset=utf-8' }, body: structured.body };
    expect(NATS.isEvent(msg)).toBe(true);
    const e = NATS.toEvent(msg) as CloudEvent<unknown>;
    expect(e.id).toBe(base.id);
    expect(e.data).toEqual({ x: 1 });
  });
});

describe('isEvent', () => {
  it('needs ce-id, ce-type and ce-source, or structured mode', () => {
    const body = Buffer.from('x');
    expect(NATS.isEvent({ headers: {}, body })).toBe(false);
    expect(NATS.isEvent({ headers: { 'content-type': 'application/json' }, body })).toBe(false);
    expect(NATS.isEvent({ headers: { 'ce-id': '1', 'ce-type': 't' }, body })).toBe(false);
    expect(NATS.isEvent({ headers: { 'ce-id': '1', 'ce-source': 's' }, body })).toBe(false);
    expect(NATS.isEvent({ headers: { 'ce-id': '1', 'ce-type': 't', 'ce-source': 's' }, body })).toBe(true);
    expect(NATS.isEvent({ headers: { 'content-type': 'application/cloudevents+json' }, body })).toBe(true);
  });

  it('toEvent refuses a message that is not an event', () => {
    expect(() => NATS.toEvent({ headers: { 'content-type': 'text/plain' }, body: Buffer.from('hello') })).toThrow(ValidationError);
  });
});

describe('through a real nats-server', () => {
  let server: NatsServer;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNats();
    nc = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  async function roundTrip(msg: NatsMessage) {
    const subject = `ce.test.${Math.random().toString(36).slice(2)}`;
    const sub = nc.subscribe(subject, { max: 1 });
    nc.publish(subject, msg.body, { headers: toNatsHeaders(msg) });
    for await (const m of sub) return m;
    throw new Error('no message received');
  }

  it('binary mode: headers and payload survive publish/subscribe', async () => {
    const event = new CloudEvent({
      ...base,
      datacontenttype: 'text/tab-separated-values',
      uploadid: 'Zoë "x" 10%',
      data: '2025-07-18 20:42:34.000\tDCGM_FI_DEV_GPU_UTIL\tx\\ty\n',
    });
    const received = await roundTrip(NATS.binary(event));
    expect(received.headers?.get('ce-uploadid')).toBe('Zo%C3%AB%20%22x%22%2010%25');
    const decoded = fromNatsMsg(received);
    expect(NATS.isEvent(decoded)).toBe(true);
    const back = NATS.toEvent(decoded) as CloudEvent<unknown>;
    expectSameAttributes(back, event);
    expect(back.uploadid).toBe('Zoë "x" 10%');
    expect(back.data).toBe(event.data);
  });

  it('structured mode survives publish/subscribe', async () => {
    const event = new CloudEvent({ ...base, datacontenttype: 'application/json', data: { part: 3, header: ['a', 'b'] } });
    const back = NATS.toEvent(fromNatsMsg(await roundTrip(NATS.structured(event)))) as CloudEvent<unknown>;
    expectSameAttributes(back, event);
    expect(back.data).toEqual({ part: 3, header: ['a', 'b'] });
  });

  it('a plain message without headers is not an event', async () => {
    const received = await roundTrip({ headers: {}, body: Buffer.from('raw') });
    const decoded = fromNatsMsg(received);
    expect(decoded.headers).toEqual({});
    expect(NATS.isEvent(decoded)).toBe(false);
  });
});
