import type { z } from 'zod';
import { HttpError } from './http.ts';
import { printableName } from './schemas.ts';

// Request validation with zod schemas (query API, upload routes): every problem of the path and
// the query string is collected into one 400 whose message and details name the parameters,
// before any lookup.

export interface ParameterProblem {
  parameter: string;
  in: 'path' | 'query';
  message: string;
}

function problemsOf(error: z.ZodError, where: ParameterProblem['in']): ParameterProblem[] {
  return error.issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((k) => ({ parameter: printableName(k, 'a parameter name'), in: where, message: 'is not a known parameter' }));
    }
    return [{ parameter: String(issue.path[0] ?? '(request)'), in: where, message: issue.message }];
  });
}

export function invalidParameters(problems: ParameterProblem[]): HttpError {
  const message = problems.map((p) => `${p.parameter} ${p.message}`).join('; ');
  return new HttpError(400, 'invalid_parameter', message, { parameters: problems });
}

/** Validates path and query parameters together; throws a 400 naming every bad parameter. */
export function validateRequest<P extends z.ZodType, Q extends z.ZodType>(
  path: { schema: P; values: Record<string, string> },
  query: { schema: Q; url: URL; /** Parameters that may be repeated: passed to the schema as arrays. */ repeatable?: readonly string[] },
): { path: z.output<P>; query: z.output<Q> } {
  const problems: ParameterProblem[] = [];
  const values: Record<string, string | string[]> = {};
  for (const [key, value] of query.url.searchParams) {
    if (query.repeatable?.includes(key)) {
      values[key] = [...((values[key] as string[] | undefined) ?? []), value];
      continue;
    }
    if (key in values) problems.push({ parameter: printableName(key, 'a parameter name'), in: 'query', message: 'is given more than once' });
    values[key] = value;
  }
  const p = path.schema.safeParse(path.values);
  if (!p.success) problems.push(...problemsOf(p.error, 'path'));
  const q = query.schema.safeParse(values);
  if (!q.success) problems.push(...problemsOf(q.error, 'query'));
  const unique = problems.filter((x, i) => problems.findIndex((y) => y.parameter === x.parameter && y.message === x.message) === i);
  if (unique.length || !p.success || !q.success) throw invalidParameters(unique);
  return { path: p.data, query: q.data };
}
