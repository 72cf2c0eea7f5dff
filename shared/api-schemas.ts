import { z } from 'zod';

// Response bodies shared/http.ts writes for every HTTP function (the error envelope, the probes),
// as zod schemas with OpenAPI metadata for the functions' API documents.

export const errorSchema = z
  .object({
    error: z.object({
      code: z.string().meta({ example: 'invalid_parameter' }),
      message: z.string(),
      details: z.unknown().optional(),
    }),
  })
  .meta({ id: 'Error' });

export const healthSchema = z
  .object({ status: z.string(), problems: z.array(z.string()).optional() })
  .meta({ id: 'Health' });
