// Build the console's browser bundles into web/static/vendor.
//
// Everything comes from node_modules (installed from the npm registry with
// package-lock.json); nothing is fetched from a CDN at build or run time.

import { build } from 'esbuild';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const outdir = join(here, '..', 'static', 'vendor');
const require = createRequire(import.meta.url);

const common = {
  absWorkingDir: here,
  bundle: true,
  minify: true,
  legalComments: 'linked',
  logLevel: 'warning',
  outdir,
  // Stable names, so a build of the same lockfile writes the same files.
  entryNames: '[name]',
  assetNames: 'fonts/[name]-[hash]',
  charset: 'utf8',
};

async function buildScripts() {
  await build({
    ...common,
    entryPoints: {
      'bpmn-viewer': 'src/viewer.js',
      'bpmn-modeler': 'src/modeler.js',
    },
    format: 'iife',
    target: ['es2020'],
    define: { 'process.env.NODE_ENV': '"production"' },
  });
}

async function buildStyles() {
  await build({
    ...common,
    entryPoints: [
      'src/diagram-js.css',
      'src/bpmn-js.css',
      'src/properties-panel.css',
      'src/dmn-js.css',
      'src/provisioning-diagram.css',
    ],
    loader: {
      '.eot': 'file',
      '.svg': 'file',
      '.ttf': 'file',
      '.woff': 'file',
      '.woff2': 'file',
    },
  });
}

async function copyHtmx() {
  await copyFile(
    require.resolve('htmx.org/dist/htmx.min.js'),
    join(outdir, 'htmx.min.js')
  );
}

const started = Date.now();
await rm(outdir, { recursive: true, force: true });
await mkdir(outdir, { recursive: true });
await Promise.all([buildScripts(), buildStyles(), copyHtmx()]);
// build.sh compares this file's time with the sources to skip a rebuild.
await writeFile(join(outdir, '.build-stamp'), 'built by web/frontend/build.mjs\n');
console.log(`web/static/vendor built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
