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

const common = {
  plugins: [packageVersionOnly],
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
if (existsSync(cli)) targets.push({ entry: cli, outfile: join(root, 'dist', 'cli', 'index.js') });

await Promise.all(targets.map(({ entry, outfile }) => build({ ...common, entryPoints: [entry], outfile })));
for (const { outfile } of targets) console.log(`built ${outfile.slice(root.length)}`);
