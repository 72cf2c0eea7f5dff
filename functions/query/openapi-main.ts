// `npm run openapi`: writes the generated OpenAPI document next to this file (committed; a test
// checks it is current).
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openApiText } from './openapi.ts';

const target = fileURLToPath(new URL('./openapi.json', import.meta.url));
writeFileSync(target, openApiText());
console.log(`wrote ${target}`);
