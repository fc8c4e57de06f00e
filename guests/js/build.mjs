// Builds the JavaScript components with componentize-js against the repository's WIT:
// `node build.mjs [OUT_DIR]` (default `dist/`) writes `<name>.wasm` for each entry below.
// No network: the engine comes with the npm package.
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wit = resolve(here, '../../wit');

/** name -> (entry module, world of ../../wit). */
const COMPONENTS = [
  { name: 'sendgrid_js_email', source: 'email/index.js', world: 'email-provider' },
];

const out = resolve(process.argv[2] ?? join(here, 'dist'));
await mkdir(out, { recursive: true });
for (const { name, source, world } of COMPONENTS) {
  const started = Date.now();
  const { component } = await componentize({
    sourcePath: join(here, source),
    witPath: wit,
    worldName: world,
    // The host offers no wasi:http; outbound HTTP goes through cairn:durable/http.
    disableFeatures: ['http', 'fetch-event'],
  });
  const path = join(out, `${name}.wasm`);
  await writeFile(path, component);
  console.error(`built ${path}: ${component.length} bytes in ${Date.now() - started} ms`);
}
