import {
  CloudEvent,
  type Binding,
  type CloudEventV1,
  type Headers,
  type Message,
  ValidationError,
} from 'cloudevents';
import { headers as natsHeaders, type MsgHdrs, type Msg } from 'nats';

// CloudEvents NATS protocol binding (binary and structured content modes), written against the
// SDK's generic Binding/Message interface because the SDK ships no NATS binding.
// Binary mode: every attribute is a `ce-<name>` header whose value is percent-encoded (space, `"`,
// `%` and anything outside U+0021–U+007E, as UTF-8 bytes); `datacontenttype` also travels as
// `ce-datacontenttype`; the payload is the data. Structured mode: `Content-Type:
// application/cloudevents+json` and the JSON event format as payload. Readers match header names
// case-insensitively, as the binding requires.

export interface NatsMessage extends Message {
  body: Uint8Array;
}

const STRUCTURED = 'application/cloudevents+json';
const PREFIX = 'ce-';

export function percentEncode(value: string): string {
  let out = '';
  for (const ch of value) {
    const cp = ch.codePointAt(0)!;
    if (cp >= 0x21 && cp <= 0x7e && ch !== '"' && ch !== '%') {
      out += ch;
    } else {
      for (const byte of Buffer.from(ch, 'utf8')) out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
    }
  }
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function percentDecode(raw: string): string {
  let value = raw;
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1).replace(/\\(.)/g, '$1');
  if (!value.includes('%')) return value;
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '%' && /^[0-9A-Fa-f]{2}$/.test(value.slice(i + 1, i + 3))) {
      bytes.push(parseInt(value.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(c, 'utf8'));
    }
  }
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    throw new ValidationError(`header value is not valid UTF-8 after percent-decoding: ${raw}`);
  }
}

function lowerCaseHeaders(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k.toLowerCase()] = String(v);
  return out;
}

function encodeData(data: unknown): Uint8Array {
  if (data === undefined || data === null) return new Uint8Array(0);
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  return Buffer.from(JSON.stringify(data), 'utf8');
}

function isJson(contentType: string | undefined): boolean {
  return !!contentType && /^application\/([\w.+-]+\+)?json(;|$)/i.test(contentType);
}

function binary<T>(event: CloudEventV1<T>): NatsMessage {
  const headers: Headers = {};
  for (const [name, value] of Object.entries(event)) {
    if (name === 'data' || name === 'data_base64' || value === undefined || value === null) continue;
    const text = value instanceof Date ? value.toISOString() : String(value);
    headers[PREFIX + name] = percentEncode(text);
  }
  const body = event.data_base64 !== undefined ? Buffer.from(event.data_base64, 'base64') : encodeData(event.data);
  return { headers, body };
}

function structured<T>(event: CloudEventV1<T>): NatsMessage {
  const json = JSON.stringify(event instanceof CloudEvent ? event.toJSON() : event);
  return { headers: { 'content-type': STRUCTURED }, body: Buffer.from(json, 'utf8') };
}

function isStructured(headers: Record<string, string>): boolean {
  return (headers['content-type'] ?? '').toLowerCase().startsWith('application/cloudevents');
}

function isEvent(message: Message): boolean {
  const h = lowerCaseHeaders(message.headers);
  return isStructured(h) || (PREFIX + 'id' in h && PREFIX + 'type' in h && PREFIX + 'source' in h);
}

function toEvent<T>(message: Message): CloudEvent<T> {
  const h = lowerCaseHeaders(message.headers);
  const body = message.body instanceof Uint8Array ? message.body : encodeData(message.body);
  if (isStructured(h)) {
    const parsed = JSON.parse(Buffer.from(body).toString('utf8'));
    return new CloudEvent<T>(parsed);
  }
  if (!(PREFIX + 'id' in h)) throw new ValidationError('not a CloudEvent: no ce-id header and not structured mode');
  const attrs: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(h)) {
    if (name.startsWith(PREFIX)) attrs[name.slice(PREFIX.length)] = percentDecode(value);
  }
  const contentType = attrs.datacontenttype as string | undefined;
  const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  let data: unknown = bytes;
  if (bytes.length === 0) data = undefined;
  else if (isJson(contentType)) data = JSON.parse(bytes.toString('utf8'));
  else if (contentType?.startsWith('text/')) data = bytes.toString('utf8');
  return new CloudEvent<T>({ ...(attrs as object), data } as CloudEventV1<T>, false);
}

export const NATS: Binding<NatsMessage, NatsMessage> = { binary, structured, toEvent, isEvent };

/**
 * Binary-mode message for an event whose data is already encoded bytes (a sample batch). The
 * attributes are checked by the SDK; the body is used as it is — an event built with the SDK's
 * `data` would carry a base64 copy of it (data_base64) that `binary()` decodes again.
 */
export function binaryMessage(attributes: Omit<CloudEventV1<never>, 'specversion' | 'data' | 'data_base64'>, body: Uint8Array): NatsMessage {
  return { headers: binary(new CloudEvent(attributes)).headers, body };
}

/**
 * A received event with its data left as the raw body bytes (binary mode): the attributes are
 * decoded, the body is neither copied nor decoded as text or JSON. For handlers that pass the
 * payload on untouched (collect). Structured-mode events are decoded as usual.
 */
export function toEventWithRawData(message: NatsMessage): CloudEventV1<Uint8Array | unknown> {
  const h = lowerCaseHeaders(message.headers);
  if (isStructured(h)) return toEvent(message);
  if (!(PREFIX + 'id' in h)) throw new ValidationError('not a CloudEvent: no ce-id header and not structured mode');
  const event: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(h)) {
    if (name.startsWith(PREFIX)) event[name.slice(PREFIX.length)] = percentDecode(value);
  }
  for (const required of ['specversion', 'source', 'type']) {
    if (typeof event[required] !== 'string') throw new ValidationError(`not a CloudEvent: no ce-${required} header`);
  }
  if (message.body.byteLength > 0) event.data = Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength);
  return event as unknown as CloudEventV1<Uint8Array>;
}

/** Message → nats.js headers (multi-valued headers are not used by the binding). */
export function toNatsHeaders(message: Message): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(message.headers)) if (v !== undefined) h.set(k, String(v));
  return h;
}

/** A received NATS message as a binding Message. */
export function fromNatsMsg(msg: Pick<Msg, 'headers' | 'data'>): NatsMessage {
  const headers: Headers = {};
  if (msg.headers) for (const [k, values] of msg.headers) headers[k] = values[0];
  return { headers, body: msg.data };
}
