// Benchmark: render a generated monorepo of N apps (half kustomize overlays over a shared base,
// half Helm charts), cold, then again after a commit touching one app. Prints apps/s cold, and
// for the warm run the number of helm/kustomize invocations and the time, with the same warm run
// without the cache as the baseline measured here.
//
//   node bench/render.ts [--apps 200] [--concurrency 2]
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { directoryCache, type RenderCache } from '../src/core/render/cache.ts';
import { createHash } from 'node:crypto';
import { toStream } from '../src/core/render/output.ts';
import { render } from '../src/core/render/render.ts';
import { ensureBinaries } from '../test/cluster/controlplane.ts';

const { values } = parseArgs({
  options: {
    apps: { type: 'string', default: '200' },
    concurrency: { type: 'string', default: String(availableParallelism()) },
  },
});
const appCount = Number(values.apps);
const concurrency = Number(values.concurrency);

async function put(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
}

function appFiles(i: number, version = '1.0'): Record<string, string> {
  const name = `app-${String(i).padStart(3, '0')}`;
  if (i % 2 === 0) {
    return {
      [`apps/${name}/kustomization.yaml`]: `namespace: ${name}\nresources: [../../base]\nnamePrefix: ${name}-\nimages: [{name: ghcr.io/acme/service, newTag: "${version}"}]\nconfigMapGenerator: [{name: settings, literals: [APP=${name}]}]\n`,
    };
  }
  return {
    [`apps/${name}/Chart.yaml`]: `apiVersion: v2\nname: ${name}\nversion: 0.1.0\nappVersion: "${version}"\n`,
    [`apps/${name}/values.yaml`]: `replicas: 2\nimage: ghcr.io/acme/${name}:${version}\n`,
    [`apps/${name}/templates/deployment.yaml`]:
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: {{ .Chart.Name }}}\nspec:\n  replicas: {{ .Values.replicas }}\n  selector: {matchLabels: {app: {{ .Chart.Name }}}}\n  template:\n    metadata: {labels: {app: {{ .Chart.Name }}}}\n    spec: {containers: [{name: app, image: {{ .Values.image }}}]}\n',
    [`apps/${name}/templates/service.yaml`]:
      'apiVersion: v1\nkind: Service\nmetadata: {name: {{ .Chart.Name }}}\nspec: {selector: {app: {{ .Chart.Name }}}, ports: [{port: 80}]}\n',
  };
}

async function renderAll(ws: string, cache: RenderCache | undefined) {
  const apps = Array.from({ length: appCount }, (_, i) => `apps/app-${String(i).padStart(3, '0')}`);
  let invocations = 0;
  let objects = 0;
  // Per-app digests of the rendered output: the cached run must match the uncached one exactly.
  const digests = new Map<string, string>();
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < apps.length) {
        const path = apps[next++]!;
        const result = await render({ workspace: ws, path, ...(cache ? { cache } : {}) });
        invocations += result.toolInvocations;
        objects += result.objects.length;
        digests.set(path, createHash('sha256').update(toStream(result.objects)).digest('hex'));
      }
    }),
  );
  return { seconds: (performance.now() - started) / 1000, invocations, objects, digests };
}

async function main(): Promise<void> {
  process.env.PATH = `${await ensureBinaries()}:${process.env.PATH}`;
  const ws = await mkdtemp(join(tmpdir(), 'bench-render-'));
  try {
    await put(ws, {
      'base/kustomization.yaml': 'resources: [deployment.yaml, service.yaml]\n',
      'base/deployment.yaml':
        'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: service}\nspec:\n  selector: {matchLabels: {app: service}}\n  template:\n    metadata: {labels: {app: service}}\n    spec: {containers: [{name: app, image: ghcr.io/acme/service:0.0}]}\n',
      'base/service.yaml':
        'apiVersion: v1\nkind: Service\nmetadata: {name: service}\nspec: {selector: {app: service}, ports: [{port: 80}]}\n',
    });
    for (let i = 0; i < appCount; i++) await put(ws, appFiles(i));
    const cache = directoryCache(join(ws, '.cache'));

    const cold = await renderAll(ws, cache);
    // The commit: one app's version changes.
    await put(ws, appFiles(7, '1.1'));
    const baseline = await renderAll(ws, undefined);
    const warm = await renderAll(ws, cache);

    const rows = [
      ['run', 'seconds', 'apps/s', 'tool invocations', 'objects'],
      [
        'cold (empty cache)',
        cold.seconds.toFixed(2),
        (appCount / cold.seconds).toFixed(1),
        String(cold.invocations),
        String(cold.objects),
      ],
      [
        'warm, no cache (baseline)',
        baseline.seconds.toFixed(2),
        (appCount / baseline.seconds).toFixed(1),
        String(baseline.invocations),
        String(baseline.objects),
      ],
      [
        'warm, cache, 1 app changed',
        warm.seconds.toFixed(2),
        (appCount / warm.seconds).toFixed(1),
        String(warm.invocations),
        String(warm.objects),
      ],
    ];
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    console.log(
      `render benchmark: ${appCount} apps (${appCount / 2} kustomize, ${appCount / 2} helm), concurrency ${concurrency}`,
    );
    for (const r of rows) console.log(r.map((v, c) => v.padEnd(widths[c]!)).join('  '));
    console.log(`apps/s cold: ${(appCount / cold.seconds).toFixed(1)}`);
    console.log(`warm run helm/kustomize invocations: ${warm.invocations} (goal: 1, the changed app)`);
    console.log(
      `warm run speed-up over the uncached baseline: ${(baseline.seconds / warm.seconds).toFixed(1)}x`,
    );
    const differing = [...baseline.digests]
      .filter(([app, digest]) => warm.digests.get(app) !== digest)
      .map(([app]) => app);
    if (differing.length > 0)
      throw new Error(`cached renders differ from uncached ones for: ${differing.join(', ')}`);
    console.log(`cached output identical to uncached for all ${baseline.digests.size} apps`);
  } finally {
    await rm(ws, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
