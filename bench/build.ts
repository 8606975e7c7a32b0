// Benchmark: our daemonless layers builder against `crane append` (go-containerregistry, built from
// its Go module), in the same run, against the same local registry, for the same base and files:
// a dependencies directory and an app directory, one layer each. Prints for each tool the cold
// build+push time and, after a one-file change in the app, the rebuild's time and the bytes it
// uploaded (counted by a proxy in front of the registry, so both are measured the same way).
//
// Then the controller's image (scripts/image.ts's recipe) through BuildKit from a Dockerfile, cold and
// after a change to the bundle (BuildKit's own cache), next to our layers builder doing the same.
//
// crane takes layers as tarballs, so its figures include making them with GNU tar (sorted, fixed
// mtime and owner: as reproducible as ours). Ours keeps compressed layers by their tar's digest
// (layer.ts), as the build action does: cold builds start with an empty cache, rebuilds use it.
//
//   node bench/build.ts [--runs 3]
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { buildLayersImage, clientCache } from '../src/core/image/layers-builder.ts';
import { parseLayerSpec } from '../src/core/image/layer.ts';
import { buildImage } from '../src/core/image/build.ts';
import { IMAGE_CONFIG, pushBase, stage } from '../scripts/image.ts';
import { BuildKit, buildKitUnavailableReason } from '../test/cluster/buildkit.ts';
import { ensureBinaries } from '../test/cluster/controlplane.ts';
import { OciRegistry } from '../test/cluster/registry.ts';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
  },
});
const runs = Number(values.runs);
const EPOCH = 1_700_000_000;
const ROOT = resolve(import.meta.dirname, '..');

/** A pass-through proxy counting the request bytes clients send (uploads and manifests). */
async function countingProxy(
  upstream: string,
): Promise<{ host: string; uploaded: () => number; close: () => Promise<void> }> {
  let bytes = 0;
  const [host, port] = upstream.split(':');
  const server: Server = createServer((req, res) => {
    const up = request(
      { host, port: Number(port), method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    req.on('data', (chunk: Buffer) => (bytes += chunk.length));
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port: p } = server.address() as { port: number };
  return {
    host: `127.0.0.1:${p}`,
    uploaded: () => bytes,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/**
 * Real files, not random bytes (compressors treat those very differently): the dependencies are
 * this checkout's node_modules/@kubernetes/client-node and node_modules/yaml (~3,700 files, 70 MB:
 * JavaScript, maps, type definitions), the app is this checkout's src/.
 */
async function workload(dir: string): Promise<{ deps: string; app: string }> {
  const deps = join(dir, 'deps');
  const app = join(dir, 'app');
  for (const pkg of ['@kubernetes/client-node', 'yaml']) {
    await cp(join(ROOT, 'node_modules', pkg), join(deps, pkg), { recursive: true, verbatimSymlinks: true });
  }
  await cp(join(ROOT, 'src'), app, { recursive: true });
  return { deps, app };
}

async function tarball(dir: string, out: string): Promise<void> {
  await run('tar', [
    '--sort=name',
    `--mtime=@${EPOCH}`,
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '-C',
    dir,
    '-cf',
    out,
    '.',
  ]);
}

const seconds = (ms: number) => (ms / 1000).toFixed(2);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const binDir = await ensureBinaries();
// buildctl, as the build action finds it on a runner.
process.env.PATH = `${binDir}:${process.env.PATH}`;
const crane = join(binDir, 'crane');
const registry = await OciRegistry.start();
const proxy = await countingProxy(registry.host);
const work = await mkdtemp(join(tmpdir(), 'bench-build-'));
try {
  const { deps, app } = await workload(work);
  // The base: 16 MiB in two layers, pushed once, untimed.
  const baseDir = join(work, 'base');
  await mkdir(join(baseDir, 'a'), { recursive: true });
  await mkdir(join(baseDir, 'b'), { recursive: true });
  await writeFile(join(baseDir, 'a', 'blob'), randomBytes(8 * 1024 * 1024));
  await writeFile(join(baseDir, 'b', 'blob'), randomBytes(8 * 1024 * 1024));
  await buildLayersImage({
    base: 'scratch',
    layers: [
      parseLayerSpec(`${join(baseDir, 'a')}:/opt/a`, work),
      parseLayerSpec(`${join(baseDir, 'b')}:/opt/b`, work),
    ],
    images: [`${proxy.host}/bench/base`],
    tags: ['v1'],
    sourceDateEpoch: EPOCH,
  });
  const base = `${proxy.host}/bench/base:v1`;

  // Ours keeps compressed layers by their tar's digest, as the build action does by default: a cold
  // build starts with an empty cache, its rebuild uses what the cold build left.
  const ours = async (repo: string) => {
    const before = proxy.uploaded();
    const start = performance.now();
    await buildLayersImage({
      layerCacheDir: join(work, 'layer-cache', repo),
      base,
      layers: [parseLayerSpec(`${deps}:/app/node_modules`, work), parseLayerSpec(`${app}:/app/src`, work)],
      images: [`${proxy.host}/${repo}`],
      tags: ['latest'],
      sourceDateEpoch: EPOCH,
      clientFor: clientCache({}),
    });
    return { ms: performance.now() - start, bytes: proxy.uploaded() - before };
  };
  const theirs = async (repo: string) => {
    const before = proxy.uploaded();
    const start = performance.now();
    await Promise.all([tarball(deps, join(work, 'deps.tar')), tarball(app, join(work, 'app.tar'))]);
    await run(crane, [
      'append',
      '--insecure',
      '-b',
      base,
      '-f',
      join(work, 'deps.tar'),
      '-f',
      join(work, 'app.tar'),
      '-t',
      `${proxy.host}/${repo}:latest`,
    ]);
    return { ms: performance.now() - start, bytes: proxy.uploaded() - before };
  };

  const results: Record<
    string,
    { cold: number[]; rebuild: number[]; rebuildBytes: number[]; coldBytes: number[] }
  > = {
    'kube-actions layers': { cold: [], rebuild: [], rebuildBytes: [], coldBytes: [] },
    'crane append': { cold: [], rebuild: [], rebuildBytes: [], coldBytes: [] },
  };
  for (let r = 0; r < runs; r++) {
    // Alternate who goes first, so neither always meets a warmer page cache.
    const order: [string, (repo: string) => Promise<{ ms: number; bytes: number }>][] = [
      ['kube-actions layers', ours],
      ['crane append', theirs],
    ];
    if (r % 2) order.reverse();
    for (const [name, tool] of order) {
      const repo = `bench/${name.split(' ')[0]}-${r}`;
      await writeFile(join(app, 'changed.ts'), `export const run = ${r};\n`);
      const cold = await tool(repo);
      await writeFile(join(app, 'changed.ts'), `export const run = ${r}; // changed\n`);
      const rebuild = await tool(repo);
      results[name]!.cold.push(cold.ms);
      results[name]!.coldBytes.push(cold.bytes);
      results[name]!.rebuild.push(rebuild.ms);
      results[name]!.rebuildBytes.push(rebuild.bytes);
    }
  }

  console.log(
    `\nbuild + push, ${runs} runs (median); deps: @kubernetes/client-node + yaml from node_modules; app: src/; base 16 MiB`,
  );
  console.log('tool                   cold (s)   uploaded      rebuild (s)   rebuild uploaded');
  for (const [name, r] of Object.entries(results)) {
    console.log(
      `${name.padEnd(22)} ${seconds(median(r.cold)).padStart(8)}   ${String(median(r.coldBytes)).padStart(10)} B   ${seconds(median(r.rebuild)).padStart(8)}      ${String(median(r.rebuildBytes)).padStart(10)} B`,
    );
  }
  const o = results['kube-actions layers']!;
  const c = results['crane append']!;
  console.log(
    `\ncold: kube-actions takes ${(median(o.cold) / median(c.cold)).toFixed(2)}x crane's time (goal: <= 1.00)`,
  );
  console.log(
    `rebuild: kube-actions takes ${(median(o.rebuild) / median(c.rebuild)).toFixed(2)}x crane's time, uploads ${median(o.rebuildBytes)} B against crane's ${median(c.rebuildBytes)} B`,
  );

  await controllerImage();
} finally {
  await proxy.close();
  await registry.stop();
  await rm(work, { recursive: true, force: true });
}

/**
 * The controller's image through BuildKit (a Dockerfile COPYing the same files onto the same
 * base): cold (a fresh daemon) and rebuilt from its cache after the bundle changes; and the same
 * image from our layers recipe, cold and after the same change.
 */
async function controllerImage(): Promise<void> {
  const unavailable = await buildKitUnavailableReason();
  if (unavailable) {
    console.log(`
controller image: BuildKit skipped (${unavailable})`);
    return;
  }
  const platforms = [{ os: 'linux', architecture: 'amd64' }];
  const baseRef = await pushBase(`${proxy.host}/bench/controller-base`, []);
  const context = join(work, 'controller');
  await mkdir(context, { recursive: true });
  const staged = await stage(platforms);
  const copies: string[] = [];
  for (const line of staged) {
    const spec = parseLayerSpec(line, ROOT);
    const name = spec.destination.split('/').pop()!;
    await cp(spec.source, join(context, name), { dereference: true });
    copies.push(`COPY ${name} ${spec.destination}`);
  }
  await writeFile(
    join(context, 'Dockerfile'),
    ['ARG BASE', 'FROM ${BASE}', ...copies, 'USER 65532:65532', ''].join('\n'),
  );
  const bundle = join(context, 'kube-actions.js');
  const change = (n: number) => appendFile(bundle, `\n// bench change ${n}\n`);

  const buildkit = await BuildKit.start({ registries: [proxy.host] });
  try {
    const viaBuildKit = async () => {
      const start = performance.now();
      await buildImage({
        images: [`${proxy.host}/bench/controller-buildkit`],
        tags: ['latest'],
        push: true,
        dockerfile: {
          context,
          buildArgs: [`BASE=${baseRef}`],
          secrets: [],
          cacheFrom: [],
          cacheTo: [],
          outputs: [],
          address: buildkit.address,
        },
      });
      return performance.now() - start;
    };
    const layerCache = join(work, 'controller-layer-cache');
    const viaLayers = async () => {
      const start = performance.now();
      await buildImage({
        images: [`${proxy.host}/bench/controller-layers`],
        tags: ['latest'],
        push: true,
        platforms,
        layers: {
          base: baseRef,
          layers: [...staged.slice(0, -1), `${bundle}:/app/kube-actions.js`].map((l) =>
            parseLayerSpec(l, ROOT),
          ),
          config: IMAGE_CONFIG,
          sourceDateEpoch: EPOCH,
          cacheDir: layerCache,
        },
      });
      return performance.now() - start;
    };
    const bkCold = await viaBuildKit();
    await change(1);
    const bkWarm = await viaBuildKit();
    const lyCold = await viaLayers();
    await change(2);
    const lyWarm = await viaLayers();
    console.log(
      '\ncontroller image (Debian base, node, helm, kustomize, the bundle)   cold (s)   after a bundle change (s)',
    );
    console.log(
      `BuildKit (Dockerfile, its own cache)                                ${seconds(bkCold).padStart(8)}   ${seconds(bkWarm).padStart(8)}`,
    );
    console.log(
      `kube-actions layers                                                 ${seconds(lyCold).padStart(8)}   ${seconds(lyWarm).padStart(8)}`,
    );
    console.log(
      `BuildKit's cached rebuild takes ${(bkWarm / bkCold).toFixed(2)}x its cold build; layers' rebuild ${(lyWarm / lyCold).toFixed(2)}x`,
    );
  } finally {
    await buildkit.stop();
  }
}
