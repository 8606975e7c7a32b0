// Bundles every action (<name>/action.yml + src/actions/<name>.ts -> <name>/dist/index.js,
// committed, as GitHub requires) and the CLI (src/cli/index.ts -> dist/cli/index.js) into single
// ESM files for Node 24. An action lives in a top-level directory because GitHub resolves
// `uses: OWNER/REPO/PATH@REF` to PATH/action.yml from the repository root, so
// `<org>/kube-actions/build@v1` needs build/action.yml. Output is deterministic, so CI can check
// that the committed bundles are current with `git diff --exit-code '*/dist'`.
import { build } from 'esbuild';
import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

// The bundles read only the version from package.json (src/version.ts): inline just that, so a
// dependency added to package.json does not change every committed bundle.
const packageVersionOnly = {
  name: 'package-version-only',
  setup(b) {
    b.onLoad({ filter: /[\\/]package\.json$/ }, async (args) => {
      const { version } = JSON.parse(await readFile(args.path, 'utf8'));
      return { contents: JSON.stringify({ version }), loader: 'json' };
    });
  },
};

// node:http loaded with require(), not import: importing a built-in from ESM makes Node read
// every one of its exports to build the module namespace, and node:http's WebSocket,
// CloseEvent and MessageEvent are getters that load Node's own copy of undici (its 750 KB
// source and all it builds: 14 MB of RSS in a process that never calls them; the Kubernetes
// client brings its own undici). Bundled as CommonJS, the getters are left alone.
const httpByRequire = {
  name: 'http-by-require',
  setup(b) {
    b.onResolve({ filter: /^(node:)?http$/ }, (args) =>
      args.namespace === 'http-by-require'
        ? { path: 'node:http', external: true }
        : { path: 'node:http', namespace: 'http-by-require' },
    );
    b.onLoad({ filter: /.*/, namespace: 'http-by-require' }, () => ({
      contents: "module.exports = require('node:http');",
      loader: 'js',
    }));
  },
};

// @kubernetes/client-node's generated code (dist/gen: API classes, models, their serializer)
// only defines things when imported, but the package does not say so, so esbuild keeps all of it
// once anything there is imported. Saying so leaves out what src/core/kube/client-node.ts does
// not reach: 600 KB of model classes a controller would otherwise build at every start.
const clientNodeGenHasNoSideEffects = {
  name: 'client-node-gen-has-no-side-effects',
  setup(b) {
    const gen = /[\\/]@kubernetes[\\/]client-node[\\/]dist[\\/]gen[\\/]/;
    b.onResolve({ filter: /^(\.|@kubernetes\/client-node\/)/ }, async (args) => {
      if (args.pluginData === 'resolved') return undefined;
      if (args.path.startsWith('.') && !/[\\/]@kubernetes[\\/]client-node[\\/]/.test(args.importer))
        return undefined;
      const { resolveDir, kind, importer } = args;
      const r = await b.resolve(args.path, { resolveDir, kind, importer, pluginData: 'resolved' });
      return r.errors.length === 0 && gen.test(r.path) ? { ...r, sideEffects: false } : r;
    });
  },
};

const common = {
  plugins: [packageVersionOnly, httpByRequire, clientNodeGenHasNoSideEffects],
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'esm',
  // Some bundled CommonJS dependencies call require() on Node built-ins.
  banner: {
    js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
  },
  legalComments: 'eof',
  sourcemap: false,
  logLevel: 'warning',
};

const targets = [];
for (const name of readdirSync(root).sort()) {
  if (name === 'node_modules' || !existsSync(join(root, name, 'action.yml'))) continue;
  const entry = join(root, 'src', 'actions', `${name}.ts`);
  if (!existsSync(entry)) throw new Error(`${name}/action.yml has no entry point src/actions/${name}.ts`);
  targets.push({ entry, outfile: join(root, name, 'dist', 'index.js') });
}
const cli = join(root, 'src', 'cli', 'index.ts');
// The CLI is also the controller, a long-running process whose memory counts: V8 keeps a
// script's whole source, and one non-ASCII character (a quote in a dependency's comment) makes it
// two bytes a character: 8.8 MB for this 4.4 MB bundle. Without whitespace and comments the source
// is ASCII (esbuild escapes the rest) and half the size; names stay, for stack traces. The
// licence notices, which are not all ASCII, go beside it (index.js.LEGAL.txt, in the image too).
if (existsSync(cli))
  targets.push({
    entry: cli,
    outfile: join(root, 'dist', 'cli', 'index.js'),
    options: { minifyWhitespace: true, minifySyntax: true, legalComments: 'external' },
  });

await Promise.all(
  targets.map(({ entry, outfile, options }) =>
    build({ ...common, ...options, entryPoints: [entry], outfile }),
  ),
);
for (const { outfile } of targets) console.log(`built ${outfile.slice(root.length)}`);
