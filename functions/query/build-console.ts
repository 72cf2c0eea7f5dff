// Builds the console (functions/query/console/) into dist/console/ (run by `npm run build`): the Preact app and the Swagger
// UI initializer bundled by esbuild, uPlot's CSS inlined into app.css, Swagger UI's own files
// copied from swagger-ui-dist. Everything is served by the query function; nothing from a CDN.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = join(dirname(fileURLToPath(import.meta.url)), 'console');
const out = resolve(process.argv[2] ?? join(here, '..', '..', '..', 'dist', 'console'));
const assets = join(out, 'assets');
rmSync(out, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });

await build({
  entryPoints: { app: join(here, 'app.tsx'), docs: join(here, 'docs.ts') },
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: assets,
  legalComments: 'none',
  logLevel: 'warning',
});
await build({ entryPoints: { app: join(here, 'style.css') }, bundle: true, minify: true, outdir: assets, logLevel: 'warning' });

const swagger = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
for (const f of ['swagger-ui-bundle.js', 'swagger-ui.css']) copyFileSync(join(swagger, f), join(assets, f));
for (const f of ['index.html', 'docs.html']) copyFileSync(join(here, f), join(out, f));
console.log(`console built in ${out}`);
