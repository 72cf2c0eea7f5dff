import { gzipSync } from 'node:zlib';
import { HEADER, syntheticCsv, syntheticRow } from './csv.ts';
import type { RawStep } from './raw-http.ts';

// The bad-input corpus: requests to both HTTP functions and CSV rows an attacker or a careless
// user sends. `before` says what the code before issue 6 did where it was broken. Each HTTP
// case states the status, a pattern the error message must match (it names the problem) and,
// where the input carries bytes that must never come back, a marker.

export interface HttpCase {
  name: string;
  fn: 'upload' | 'query';
  method?: 'GET' | 'POST' | 'PUT';
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Send the body as a stream (chunked transfer encoding, no Content-Length). */
  chunked?: boolean;
  /** Raw request bytes, for what fetch cannot send (control bytes in headers, lying lengths). */
  raw?: (host: string) => RawStep[];
  status: number;
  names: RegExp;
  marker?: string;
  before?: string;
}

/** A CSV file with good rows around one bad row; its good rows must be stored exactly once. */
export interface RowCase {
  name: string;
  /** The bad row, as text or bytes (e.g. invalid UTF-8), for GPU `uuid`. */
  row: (uuid: string) => string | Buffer;
  /** The reject reason must match. */
  reason: RegExp;
  marker?: string;
  before?: string;
}

const CSV = syntheticCsv('GPU-corpus-never-stored', 3);
const BOUNDARY = 'corpusBoundary7MA4YWxkTrZu0gW';
const MULTIPART = { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` };
const part = (name: string, content: string | Buffer, filename?: string) =>
  Buffer.concat([
    Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"${filename ? `; filename="${filename}"` : ''}\r\n${filename ? 'Content-Type: text/csv\r\n' : ''}\r\n`, 'latin1'),
    Buffer.from(content),
    Buffer.from('\r\n'),
  ]);
const END = `--${BOUNDARY}--\r\n`;
const form = (...parts: (Buffer | string)[]) => Buffer.concat(parts.map((p) => Buffer.from(p)));
const GARBAGE = Buffer.from([0x00, 0xff, 0xfe, 0x1b, 0x5b, 0x33, 0x31, 0x6d, 0x00, 0x80, 0x81, 0x7f, 0xc3, 0x28]);
const gz = (data: string | Buffer) => gzipSync(Buffer.from(data));
const UPLOADS = '/api/v1/uploads';
const TELEMETRY = '/api/v1/gpus/GPU-corpus/telemetry';
const STATUS = '/api/v1/uploads/0b6c4d8e-3f1a-4c2b-9d7e-5a6f8b9c0d1e';
const CRASHED = 'the upload process exited (unhandled rejection in the multipart path)';

/** A raw POST with the given header lines and body. */
const rawPost = (headerLines: string, body: Buffer | string) => (host: string) => [
  { send: Buffer.concat([Buffer.from(`POST ${UPLOADS} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n${headerLines}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`, 'latin1'), Buffer.from(body)]) },
];

export const httpCases: HttpCase[] = [
  // --- multipart/form-data
  { name: 'multipart without a boundary', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'multipart/form-data' }, body: form(part('file', CSV, 'a.csv'), END), status: 400, names: /needs a boundary/, before: CRASHED },
  { name: 'multipart with garbage instead of parts', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: GARBAGE, status: 400, names: /no part with the boundary/, marker: '\ufffd', before: CRASHED },
  { name: 'multipart with an empty body', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: '', status: 400, names: /no part with the boundary/, before: CRASHED },
  { name: 'multipart without a "file" field', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: form(part('comment', 'hello'), END), status: 400, names: /no "file" field/, before: CRASHED },
  { name: 'multipart with only a differently named file', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: form(part('upload', CSV, 'a.csv'), END), status: 400, names: /file part named "upload" before "file"/, before: CRASHED },
  { name: 'multipart with another file part before "file"', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: form(part('attachment', CSV, 'x.csv'), part('file', CSV, 'a.csv'), END), status: 400, names: /before "file"/, before: CRASHED },
  { name: 'multipart with two "file" parts', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: form(part('file', CSV, 'a.csv'), part('file', CSV, 'b.csv'), END), status: 400, names: /more than one file part/, before: 'the second file was silently dropped (202)' },
  { name: 'multipart with a second file under another name', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: form(part('file', CSV, 'a.csv'), part('more', CSV, 'b.csv'), END), status: 400, names: /more than one file part \(another one is named "more"\)/, before: 'silently dropped (202)' },
  { name: 'multipart truncated: no closing boundary', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: part('file', CSV, 'a.csv'), status: 400, names: /ends before its closing boundary/, before: '500 "unexpected end of form" or a crash' },
  { name: 'multipart truncated inside the file', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: part('file', CSV, 'a.csv').subarray(0, 200), status: 400, names: /ends before its closing boundary/, before: '500' },
  { name: 'multipart with a malformed part header', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: `--${BOUNDARY}\r\n${'X'.repeat(100)}\r\n\r\ndata\r\n${END}`, status: 400, names: /malformed header|no "file" field/, before: CRASHED },
  { name: 'multipart field name of raw bytes before "file"', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: form(part('\u00ff\u00fe', CSV, 'x.csv'), part('file', CSV, 'a.csv'), END), status: 400, names: /not printable ASCII\)" before "file"/, marker: '\ufffd', before: CRASHED },
  { name: 'multipart part header with a control byte', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: form(part('fi\u0001le', CSV, 'x.csv'), END), status: 400, names: /a part of the multipart form has a malformed header/, marker: '\u0001', before: CRASHED },
  { name: 'multipart with an empty file', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: form(part('file', '', 'e.csv'), END), status: 400, names: /the upload is empty/ },
  { name: 'multipart file with a wrong CSV header', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: form(part('file', 'a,b,c\n1,2,3\n', 'w.csv'), END), status: 400, names: /missing column\(s\): timestamp/ },
  { name: 'multipart with too many fields', fn: 'upload', path: UPLOADS, headers: MULTIPART, body: form(...Array.from({ length: 25 }, (_, i) => part(`f${i}`, 'x')), part('file', CSV, 'a.csv'), END), status: 400, names: /too many fields/ },
  { name: 'multipart of gzip garbage', fn: 'upload', path: UPLOADS, headers: { ...MULTIPART, 'content-encoding': 'gzip' }, body: GARBAGE, status: 400, names: /not valid gzip/, marker: '\ufffd', before: CRASHED },

  // --- encodings and media types
  { name: 'Content-Encoding br', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv', 'content-encoding': 'br' }, body: CSV, status: 415, names: /Content-Encoding "br" is not accepted/, before: 'ignored: the compressed bytes were parsed as CSV' },
  { name: 'Content-Encoding deflate', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv', 'content-encoding': 'deflate' }, body: CSV, status: 415, names: /Content-Encoding "deflate"/, before: 'ignored' },
  { name: 'Content-Encoding gzip twice', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv', 'content-encoding': 'gzip, gzip' }, body: gz(gz(CSV)), status: 415, names: /Content-Encoding "gzip, gzip"/, before: 'ignored' },
  { name: 'Content-Encoding of raw bytes', fn: 'upload', path: UPLOADS, raw: rawPost('Content-Type: text/csv\r\nContent-Encoding: z\u00ff\u00fe\r\n', CSV), status: 415, names: /an encoding name of 3 characters that is not printable ASCII/, marker: '\u00ff\u00fe', before: 'ignored' },
  { name: 'gzip body that is not gzip', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv', 'content-encoding': 'gzip' }, body: GARBAGE, status: 400, names: /not valid gzip data/, marker: '\ufffd', before: '400 echoing the binary bytes as column names' },
  { name: 'gzip body cut in half', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv', 'content-encoding': 'gzip' }, body: gz(syntheticCsv('GPU-corpus-trunc', 200)).subarray(0, 600), status: 400, names: /gzip data ends before its end/, before: '400 echoing binary bytes' },
  { name: 'gzip bomb beyond the limit', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv', 'content-encoding': 'gzip' }, body: gz(HEADER + '\n' + (' '.repeat(99) + '\n').repeat(60_000)), status: 413, names: /larger than the limit of 4194304 bytes/, before: 'the compressed bytes were parsed' },
  { name: 'a record without a line end', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv' }, body: HEADER + '\n2026-01-01T00:00:00Z,' + 'x'.repeat(1_600_000), status: 400, names: /a CSV record near line 2 is longer than 1048576 bytes \(no line end\)/, before: 'the whole rest of the body was buffered in memory as one part' },
  { name: 'gzip of binary garbage', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv', 'content-encoding': 'gzip' }, body: gz(Buffer.concat([GARBAGE, Buffer.from('\n')])), status: 400, names: /invalid CSV header: missing column/, marker: '\ufffd' },
  { name: 'charset=latin1', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv; charset=latin1' }, body: CSV, status: 415, names: /charset "latin1" is not accepted: the CSV must be UTF-8/, before: 'ignored (bytes decoded as UTF-8)' },
  { name: 'charset=utf-16', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv; charset=UTF-16' }, body: CSV, status: 415, names: /charset "utf-16"/, before: 'ignored' },
  { name: 'charset=windows-1252 (quoted)', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv; charset="windows-1252"' }, body: CSV, status: 415, names: /charset "windows-1252"/, before: 'ignored' },
  { name: 'charset of raw bytes', fn: 'upload', path: UPLOADS, raw: rawPost('Content-Type: text/csv; charset=\u00ff\u00fe\u00fd\r\n', CSV), status: 415, names: /a charset name of 3 characters that is not printable ASCII/, marker: '\u00ff\u00fe', before: 'ignored' },
  { name: 'multipart with charset=iso-8859-1', fn: 'upload', path: UPLOADS, headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}; charset=iso-8859-1` }, body: form(part('file', CSV, 'a.csv'), END), status: 415, names: /charset "iso-8859-1"/ },
  { name: 'Content-Type application/json', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'application/json' }, body: '{"rows":[]}', status: 415, names: /Content-Type "application\/json" is not accepted/ },
  { name: 'Content-Type image/png', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'image/png' }, body: GARBAGE, status: 415, names: /Content-Type "image\/png"/ },
  { name: 'Content-Type of raw bytes', fn: 'upload', path: UPLOADS, raw: rawPost('Content-Type: \u00ff\u00fe/csv\r\n', CSV), status: 415, names: /a media type of \d+ characters that is not printable ASCII/, marker: '\u00ff\u00fe' },

  // --- bodies and sizes
  { name: 'empty body', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv' }, body: '', status: 400, names: /the upload is empty/ },
  { name: 'binary garbage as CSV', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv' }, body: GARBAGE, status: 400, names: /invalid CSV header: missing column/, marker: '\ufffd' },
  { name: 'header with wrong columns', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv' }, body: 'time,metric,value\n1,2,3\n', status: 400, names: /missing column\(s\): timestamp, metric_name/ },
  { name: 'header with a column name of raw bytes', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv' }, body: Buffer.concat([Buffer.from(HEADER + ','), GARBAGE, Buffer.from('\n')]), status: 400, names: /unknown column\(s\): \(a column name of \d+ characters that is not printable ASCII\)/, marker: '\ufffd' },
  { name: 'header with a NUL in a column name', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv' }, body: HEADER.replace('value', 'val\u0000ue') + '\n', status: 400, names: /missing column\(s\): value; unknown column\(s\): \(a column name/, marker: '\u0000' },
  { name: 'header with a duplicated column', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv' }, body: HEADER + ',value\n', status: 400, names: /duplicated column\(s\): value/ },
  { name: 'header line longer than 64 KiB', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv' }, body: 'x'.repeat(70 * 1024) + '\n', status: 400, names: /header line is longer than 65536 bytes/ },
  { name: 'UTF-16 encoded file', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv' }, body: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(CSV, 'utf16le')]), status: 400, names: /invalid CSV header/, marker: '\u0000' },
  { name: 'Content-Length beyond the limit', fn: 'upload', path: UPLOADS, raw: (host) => [{ send: `POST ${UPLOADS} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\nContent-Type: text/csv\r\nContent-Length: 10737418240\r\n\r\n${HEADER}\n` }], status: 413, names: /10737418240 bytes\) is larger than the limit/ },
  { name: 'chunked body beyond the limit', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv' }, chunked: true, body: HEADER + '\n' + (syntheticRow('GPU-corpus-big', 1) + '\n').repeat(40_000), status: 413, names: /larger than the limit of 4194304 bytes/ },

  // --- upload parameters and headers
  { name: 'timestamps=bogus', fn: 'upload', path: `${UPLOADS}?timestamps=bogus`, method: 'POST', headers: { 'content-type': 'text/csv' }, body: CSV, status: 400, names: /timestamps must be "csv" .* or "processing"/ },
  { name: 'timestamps given twice', fn: 'upload', path: `${UPLOADS}?timestamps=csv&timestamps=processing`, method: 'POST', headers: { 'content-type': 'text/csv' }, body: CSV, status: 400, names: /timestamps is given more than once/, before: 'the first was taken silently' },
  { name: 'unknown upload parameter', fn: 'upload', path: `${UPLOADS}?timestamp=processing`, method: 'POST', headers: { 'content-type': 'text/csv' }, body: CSV, status: 400, names: /timestamp is not a known parameter/, before: 'ignored (a typo silently kept CSV timestamps)' },
  { name: 'parameter name of raw bytes', fn: 'upload', path: `${UPLOADS}?%FF%00=1`, method: 'POST', headers: { 'content-type': 'text/csv' }, body: CSV, status: 400, names: /\(a parameter name of 2 characters that is not printable ASCII\) is not a known parameter/, marker: '\u0000' },
  { name: 'Idempotency-Key longer than 255 characters', fn: 'upload', path: UPLOADS, headers: { 'content-type': 'text/csv', 'idempotency-key': 'k'.repeat(256) }, body: CSV, status: 400, names: /Idempotency-Key is longer than 255 characters/ },
  { name: 'Idempotency-Key of raw bytes', fn: 'upload', path: UPLOADS, raw: rawPost('Content-Type: text/csv\r\nIdempotency-Key: k\u00ff\u00fe\r\n', CSV), status: 400, names: /Idempotency-Key must be printable ASCII/, marker: '\u00ff\u00fe' },
  { name: 'empty Idempotency-Key', fn: 'upload', path: UPLOADS, raw: rawPost('Content-Type: text/csv\r\nIdempotency-Key: \r\n', CSV), status: 400, names: /Idempotency-Key must not be empty/ },
  { name: 'PUT on the uploads route', fn: 'upload', method: 'PUT', path: UPLOADS, headers: { 'content-type': 'text/csv' }, body: CSV, status: 405, names: /PUT is not allowed on \/api\/v1\/uploads/ },

  // --- upload status route
  { name: 'status reasons=0x10', fn: 'upload', path: `${STATUS}?reasons=0x10`, status: 400, names: /reasons must be a decimal integer from 0 to 1000/, before: 'accepted as 16' },
  { name: 'status reasons=1e2', fn: 'upload', path: `${STATUS}?reasons=1e2`, status: 400, names: /reasons must be a decimal integer/, before: 'accepted as 100' },
  { name: 'status reasons=1001', fn: 'upload', path: `${STATUS}?reasons=1001`, status: 400, names: /reasons must be a decimal integer from 0 to 1000/ },
  { name: 'status reasons=-1', fn: 'upload', path: `${STATUS}?reasons=-1`, status: 400, names: /reasons must be a decimal integer/ },
  { name: 'status reasons empty', fn: 'upload', path: `${STATUS}?reasons=`, status: 400, names: /reasons must be a decimal integer/, before: 'accepted as 0' },
  { name: 'status reasons given twice', fn: 'upload', path: `${STATUS}?reasons=5&reasons=6`, status: 400, names: /reasons is given more than once/, before: 'the first was taken silently' },
  { name: 'status with an unknown parameter', fn: 'upload', path: `${STATUS}?reason=5`, status: 400, names: /reason is not a known parameter/, before: 'ignored' },
  { name: 'status id that is not a UUID', fn: 'upload', path: '/api/v1/uploads/not-an-id', status: 400, names: /id must be an upload id/ },
  { name: 'status id of raw bytes', fn: 'upload', path: '/api/v1/uploads/%FF%00%FE', status: 400, names: /path parameter id is not valid percent-encoding|id must be an upload id/, marker: '\u0000' },
  { name: 'status id with bad percent-encoding', fn: 'upload', path: '/api/v1/uploads/%zz', status: 400, names: /not valid percent-encoding/ },
  { name: 'status of an unknown upload', fn: 'upload', path: STATUS, status: 404, names: /no upload with id 0b6c4d8e-3f1a-4c2b-9d7e-5a6f8b9c0d1e/ },

  // --- query routes
  { name: 'telemetry limit=0x10', fn: 'query', path: `${TELEMETRY}?limit=0x10`, status: 400, names: /limit must be an integer from 1 to 10000/ },
  { name: 'telemetry limit=0', fn: 'query', path: `${TELEMETRY}?limit=0`, status: 400, names: /limit must be an integer/ },
  { name: 'telemetry limit beyond the maximum', fn: 'query', path: `${TELEMETRY}?limit=10001`, status: 400, names: /limit must be an integer from 1 to 10000/ },
  { name: 'telemetry limit given twice', fn: 'query', path: `${TELEMETRY}?limit=1&limit=2`, status: 400, names: /limit is given more than once/ },
  { name: 'telemetry start_time on February 30', fn: 'query', path: `${TELEMETRY}?start_time=2025-02-30T00:00:00Z`, status: 400, names: /start_time has an invalid day of month/ },
  { name: 'telemetry start_time in year 2300', fn: 'query', path: `${TELEMETRY}?start_time=2300-01-01T00:00:00Z`, status: 400, names: /start_time is outside the range the store can hold/ },
  { name: 'telemetry end_time not RFC 3339', fn: 'query', path: `${TELEMETRY}?end_time=yesterday`, status: 400, names: /end_time must be an RFC 3339 timestamp/ },
  { name: 'telemetry start_time after end_time', fn: 'query', path: `${TELEMETRY}?start_time=2025-07-18T20:42:37Z&end_time=2025-07-18T20:42:34Z`, status: 400, names: /start_time is after end_time/ },
  { name: 'telemetry metric longer than 128', fn: 'query', path: `${TELEMETRY}?metric=${'m'.repeat(200)}`, status: 400, names: /metric is longer than 128 characters/ },
  { name: 'telemetry unknown parameter', fn: 'query', path: `${TELEMETRY}?limt=5`, status: 400, names: /limt is not a known parameter/ },
  { name: 'telemetry garbage cursor', fn: 'query', path: `${TELEMETRY}?cursor=%FF%00garbage`, status: 400, names: /cursor/, marker: '\u0000' },
  { name: 'telemetry uuid longer than 128', fn: 'query', path: `/api/v1/gpus/${'G'.repeat(200)}/telemetry`, status: 400, names: /uuid is longer than 128 characters/ },
  { name: 'telemetry start_time with a NUL', fn: 'query', path: `${TELEMETRY}?start_time=2025-07-18T20:42:34Z%00`, status: 400, names: /start_time must be an RFC 3339 timestamp/, marker: '\u0000' },
  { name: 'summary start_time hexadecimal', fn: 'query', path: '/api/v1/gpus/GPU-corpus/summary?start_time=0x10', status: 400, names: /start_time must be an RFC 3339 timestamp/ },
  { name: 'gpus with an unknown parameter', fn: 'query', path: '/api/v1/gpus?page=5', status: 400, names: /page is not a known parameter/ },
  { name: 'gpus limit over 1000', fn: 'query', path: '/api/v1/gpus?limit=1001', status: 400, names: /limit must be an integer from 1 to 1000/ },
  // The time-series, fleet and live routes (GraphQL answers in its own error format: test/fleet.api.test.ts): each bad input a 400 naming the parameter, the process alive.
  { name: 'series without a metric', fn: 'query', path: '/api/v1/gpus/GPU-corpus/series', status: 400, names: /metric/ },
  { name: 'series step of zero', fn: 'query', path: '/api/v1/gpus/GPU-corpus/series?metric=DCGM_FI_DEV_GPU_TEMP&step=0s', status: 400, names: /step/ },
  { name: 'series step and max_points together', fn: 'query', path: '/api/v1/gpus/GPU-corpus/series?metric=DCGM_FI_DEV_GPU_TEMP&step=1m&max_points=10', status: 400, names: /max_points/ },
  { name: 'series step with a NUL', fn: 'query', path: '/api/v1/gpus/GPU-corpus/series?metric=DCGM_FI_DEV_GPU_TEMP&step=1m%00', status: 400, names: /step/, marker: '\u0000' },
  { name: 'top by an unknown statistic', fn: 'query', path: '/api/v1/metrics/DCGM_FI_DEV_GPU_TEMP/top?by=median', status: 400, names: /by/ },
  { name: 'top limit of zero', fn: 'query', path: '/api/v1/metrics/DCGM_FI_DEV_GPU_TEMP/top?limit=0', status: 400, names: /limit/ },
  { name: 'anomalies of an unknown kind', fn: 'query', path: '/api/v1/anomalies?kind=hot', status: 400, names: /kind/ },
  { name: 'hosts limit over 1000', fn: 'query', path: '/api/v1/hosts?limit=1001', status: 400, names: /limit/ },
  { name: 'hosts garbage cursor', fn: 'query', path: '/api/v1/hosts?cursor=%FF%00garbage', status: 400, names: /cursor/, marker: '\u0000' },
  { name: 'live stream with an unknown parameter', fn: 'query', path: '/api/v1/gpus/GPU-corpus/live?since=5', status: 400, names: /since is not a known parameter/ },
  { name: 'metrics with a parameter of raw bytes', fn: 'query', path: '/api/v1/metrics?%FF=1', status: 400, names: /\(a parameter name of 1 characters that is not printable ASCII\)/, marker: '\ufffd' },
];

/** A row of GPU `uuid` with one field (by DCGM column index) replaced by `text` (bytes kept as is). */
const withField = (index: number, text: string | Buffer) => (uuid: string) => {
  const cells: (string | Buffer)[] = ['2026-01-02T00:00:01Z', 'DCGM_FI_DEV_GPU_TEMP', '0', 'nvidia0', uuid, 'NVIDIA H100 80GB HBM3', 'host-x', '', '', '', '41', `UUID=""${uuid}""`];
  cells[index] = text;
  return Buffer.concat(cells.flatMap((c, i) => [Buffer.from(i ? ',"' : '"'), Buffer.from(c), Buffer.from('"')]));
};
const ts = (t: string) => withField(0, t);
const value = (v: string) => withField(10, v);
const field = withField;

export const rowCases: RowCase[] = [
  // timestamps
  { name: 'timestamp on February 30', row: ts('2025-02-30T00:00:00Z'), reason: /timestamp has an invalid day of month/, before: 'stored as March 2' },
  { name: 'timestamp on April 31', row: ts('2025-04-31T12:00:00Z'), reason: /timestamp has an invalid day of month/, before: 'stored as May 1' },
  { name: 'timestamp in month 13', row: ts('2025-13-01T00:00:00Z'), reason: /timestamp has an invalid month/ },
  { name: 'timestamp in year 2300', row: ts('2300-01-01T00:00:00Z'), reason: /timestamp is outside the range the store can hold/, before: 'stored as another date' },
  { name: 'timestamp in year 1899', row: ts('1899-12-31T23:59:59Z'), reason: /timestamp is outside the range/, before: 'stored as another date' },
  { name: 'timestamp at hour 24', row: ts('2025-07-18T24:00:00Z'), reason: /timestamp has an invalid time of day/ },
  { name: 'timestamp without a zone', row: ts('2025-07-18T20:42:34'), reason: /timestamp must be an RFC 3339 timestamp/ },
  { name: 'timestamp as epoch seconds', row: ts('1752871354'), reason: /timestamp must be an RFC 3339 timestamp/ },
  { name: 'timestamp with a NUL', row: ts('2025-07-18T20:42:34Z\u0000'), reason: /timestamp must be an RFC 3339/, marker: '\u0000' },
  // values
  { name: 'value hexadecimal', row: value('0x10'), reason: /value is not a decimal number/, before: 'stored as 16' },
  { name: 'value binary', row: value('0b101'), reason: /value is not a decimal number/, before: 'stored as 5' },
  { name: 'value octal', row: value('0o17'), reason: /value is not a decimal number/, before: 'stored as 15' },
  { name: 'value NaN', row: value('NaN'), reason: /value is not a decimal number/ },
  { name: 'value Infinity', row: value('Infinity'), reason: /value is not a decimal number/ },
  { name: 'value beyond a 64-bit float', row: value('1e400'), reason: /value is out of the range of a 64-bit float/ },
  { name: 'value empty', row: value(''), reason: /value is required/ },
  { name: 'value with a decimal comma', row: value('1,5'), reason: /value is not a decimal number/ },
  // text
  { name: 'metric_name with a trailing NUL', row: field(1, 'DCGM_FI_DEV_GPU_TEMP\u0000'), reason: /metric_name contains a NUL character/, marker: '\u0000', before: 'stored verbatim: a new metric' },
  { name: 'Hostname with bytes that are not UTF-8', row: field(6, Buffer.from([0x68, 0xff, 0xfe, 0x6f])), reason: /Hostname is not valid UTF-8/, marker: '\ufffd', before: 'stored with U+FFFD' },
  { name: 'device with a literal U+FFFD', row: field(3, 'nvidia\ufffd'), reason: /device is not valid UTF-8/, marker: '\ufffd' },
  { name: 'uuid with a control character', row: field(4, 'GPU-\u001b[31m'), reason: /uuid contains control characters/, marker: '\u001b' },
  { name: 'uuid empty', row: field(4, ''), reason: /uuid is required/ },
  { name: 'metric_name longer than 128', row: field(1, 'M'.repeat(129)), reason: /metric_name longer than 128 characters/ },
  // structure
  { name: 'too few fields', row: (uuid) => syntheticRow(uuid, 1).split(',').slice(0, 6).join(','), reason: /expected 12 fields, found 6/ },
  {
    name: 'a quote inside an unquoted field',
    row: (uuid) => Buffer.concat([Buffer.from(`2025-07-18T20:42:34Z,DCGM_FI_DEV_GPU_TEMP,0,nvidia0,${uuid},M,h,,,,4"2`), Buffer.from([0xff, 0x01]), Buffer.from(',x')]),
    reason: /malformed CSV: a quote appears inside an unquoted field/,
    marker: '\ufffd',
    before: 'the reason quoted the field, bytes and all',
  },
];
