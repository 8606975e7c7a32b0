// Benchmark: our daemonless layers builder against `crane append` (go-containerregistry, built from
// its Go module), in the same run, against the same local registry, for the same base and files:
// a dependencies directory and an app directory, one layer each. Prints for each tool the cold
// build+push time and, after a one-file change in the app, the rebuild's time and the bytes it
// uploaded (counted by a proxy in front of the registry, so both are measured the same way).
//
// crane takes layers as tarballs, so its figures include making them with GNU tar (sorted, fixed
// mtime and owner: as reproducible as ours).
//
//   node bench/build.ts [--runs 3]
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { buildLayersImage, clientCache } from '../src/core/image/layers-builder.ts';
import { parseLayerSpec } from '../src/core/image/layer.ts';
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

  const ours = async (repo: string) => {
    const before = proxy.uploaded();
    const start = performance.now();
    await buildLayersImage({
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
} finally {
  await proxy.close();
  await registry.stop();
  await rm(work, { recursive: true, force: true });
}
