// Shared by the benchmarks that run on a cluster: polling, a bounded pool, percentiles, and the
// controller run as it ships (the bundled CLI in its own process, so its RSS is its own).
import { spawn } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import { createServer } from 'node:http';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { KubeClient, PatchType } from '../src/core/kube/client.ts';
import { APPLICATION, type Application } from '../src/controller/sync/types.ts';
import { ensureBinaries, LocalControlPlane, type ControlPlaneOptions } from '../test/cluster/controlplane.ts';
import { installCRDs } from '../test/cluster/crds.ts';
import { freePort } from '../test/cluster/ports.ts';
import { CONTROLLER_ENV, CONTROLLER_NODE_FLAGS } from '../src/controller/node-flags.ts';
import { Informer } from '../src/controller/runtime/informer.ts';
import type { ResourceRef } from '../src/core/kube/objects.ts';
import type { KubeResource } from '../src/core/kube/resource.ts';
import { NODE24 } from '../test/cluster/run-action.ts';

export const CLI = resolve(import.meta.dirname, '../dist/cli/index.js');
export const SECRET = 'bench-webhook-secret';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

/**
 * "p50 …, p99 …" of sorted samples, honestly: a p99 needs at least 100 samples, so fewer print
 * the median and the "max of N" instead.
 */
export function spread(sorted: number[], unit = 'ms'): string {
  const f = (v: number) => `${v.toFixed(0)} ${unit}`;
  if (sorted.length >= 100)
    return `p50 ${f(pct(sorted, 50))}, p99 ${f(pct(sorted, 99))}, max ${f(sorted.at(-1)!)}`;
  return `p50 ${f(pct(sorted, 50))}, max of ${sorted.length} ${f(sorted.at(-1)!)}`;
}

export async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  everyMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Runs `tasks` with `limit` in flight. */
export async function pool<T>(items: T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await task(items[next++]!);
    }),
  );
}

/** Peak resident set size (VmHWM, MiB) and CPU seconds (user + system) of a process so far. */
export async function processUsage(pid: number): Promise<{ peakRssMiB: number; cpuSeconds: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  // /proc/PID/stat: the fields after the command's closing parenthesis; utime and stime are the
  // 12th and 13th of those, in clock ticks (USER_HZ, 100 on Linux).
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return {
    peakRssMiB: Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024,
    cpuSeconds: (Number(fields[11]) + Number(fields[12])) / 100,
  };
}

/** A Prometheus text page as series (name with labels) → value. */
export function parseMetrics(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    m.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return m;
}

/**
 * API requests by verb, lower case, from client-go's rest_client_requests_total, which ours labels
 * `verb` and controller-runtime (Flux, Argo) labels `method`; summed over codes and hosts.
 */
export function requestsByVerb(metrics: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [series, v] of metrics) {
    const verb = /^rest_client_requests_total\{.*(?:verb|method)="([A-Za-z]+)"/
      .exec(series)?.[1]
      ?.toLowerCase();
    if (verb) out.set(verb, (out.get(verb) ?? 0) + v);
  }
  return out;
}

/** What grew between two readings of counters (only the ones that did). */
export function delta(after: Map<string, number>, before: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of after) if (v - (before.get(k) ?? 0) > 0) out.set(k, v - (before.get(k) ?? 0));
  return out;
}

export interface Controller {
  pid: number;
  metricsPort: number;
  webhookPort: number;
  stop: () => Promise<void>;
  metrics: () => Promise<Map<string, number>>;
  /** Peak resident set size so far (VmHWM), in MiB. */
  peakRssMiB: () => Promise<number>;
  /** With BENCH_PROFILE_DIR set: writes a heap snapshot there now and resolves with its path. */
  heapSnapshot: () => Promise<string | undefined>;
}

/**
 * BENCH_PROFILE_DIR=/some/dir profiles every controller a bench starts: a V8 CPU profile written
 * there on exit (`--cpu-prof`), heap snapshots on demand (`--heapsnapshot-signal`), both for
 * Chrome DevTools or `bench/profile-summary.ts`, and the garbage collector's trace (`--trace-gc`,
 * gc-*.log: the heap's size at each collection). Off by default: profiling slows the controller.
 */
const PROFILE_DIR = process.env.BENCH_PROFILE_DIR;
if (PROFILE_DIR) mkdirSync(PROFILE_DIR, { recursive: true });

export async function startController(
  kubeconfig: string,
  namespace: string,
  pollInterval: string,
  workers: number,
): Promise<Controller> {
  const metricsPort = await freePort();
  const webhookPort = await freePort();
  // BENCH_CONTROLLER_CACHE_DIR=/dev/shm puts the controller's git mirrors and checkouts there
  // (default: the temporary directory), to measure the filesystem's share of a sync.
  const cache = await mkdtemp(
    join(process.env.BENCH_CONTROLLER_CACHE_DIR ?? tmpdir(), 'bench-sync-controller-'),
  );
  const profileArgs = PROFILE_DIR
    ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, '--heapsnapshot-signal=SIGUSR2', '--trace-gc']
    : [];
  // With profiling, the controller's stdout (its --trace-gc lines) goes to a file beside them.
  const stdout = PROFILE_DIR ? openSync(join(PROFILE_DIR, `gc-${Date.now()}.log`), 'w') : 'ignore';
  const child = spawn(
    NODE24,
    [
      // As the image runs it; BENCH_NODE_FLAGS (space-separated) replaces the flags, to measure
      // a setting before shipping it ("" for none: node's defaults).
      ...(process.env.BENCH_NODE_FLAGS !== undefined
        ? process.env.BENCH_NODE_FLAGS.split(' ').filter(Boolean)
        : CONTROLLER_NODE_FLAGS),
      ...profileArgs,
      CLI,
      'controller',
      '--leader-elect=false',
      '--namespace',
      namespace,
      '--metrics-port',
      String(metricsPort),
      '--webhook-port',
      String(webhookPort),
      '--poll-interval',
      pollInterval,
      '--workers',
      String(workers),
      '--cache-dir',
      cache,
      '--log-level',
      'warn',
    ],
    {
      env: { ...process.env, ...CONTROLLER_ENV, KUBECONFIG: kubeconfig, KUBE_ACTIONS_WEBHOOK_SECRET: SECRET },
      stdio: ['ignore', stdout, 'inherit'],
      // Heap snapshots are written to the working directory.
      ...(PROFILE_DIR ? { cwd: PROFILE_DIR } : {}),
    },
  );
  // Answers /healthz: started, or done with a heap snapshot (written while it stops answering).
  const healthy = async () =>
    (await fetch(`http://127.0.0.1:${metricsPort}/healthz`).then(
      (r) => r.ok,
      () => false,
    ))
      ? true
      : undefined;
  await until('the controller to be healthy', healthy, 30_000, 100);
  return {
    pid: child.pid!,
    metricsPort,
    webhookPort,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await rm(cache, { recursive: true, force: true });
    },
    metrics: async () => {
      return parseMetrics(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
    },
    peakRssMiB: async () => (await processUsage(child.pid!)).peakRssMiB,
    heapSnapshot: async () => {
      if (!PROFILE_DIR) return undefined;
      const before = new Set(await readdir(PROFILE_DIR));
      child.kill('SIGUSR2');
      // The snapshot is written synchronously by the controller; its file appears when complete
      // only after the process answers again, so wait for /healthz after the file shows up.
      const file = await until(
        'the heap snapshot',
        async () => (await readdir(PROFILE_DIR)).find((f) => f.endsWith('.heapsnapshot') && !before.has(f)),
        120_000,
        200,
      );
      await until('the controller to answer after the snapshot', healthy, 120_000, 200);
      return join(PROFILE_DIR, file);
    },
  };
}

/** The cluster in $KUBECONFIG, or a local control plane started (and stopped) for the run. */
export async function benchCluster(
  name: string,
  options: Pick<ControlPlaneOptions, 'controllerManagerQPS'> = {},
): Promise<{
  kubeconfig: string;
  client: KubeClient;
  kc: k8s.KubeConfig;
  label: string;
  stop: () => Promise<void>;
}> {
  const binDir = await ensureBinaries();
  process.env.PATH = `${binDir}:${process.env.PATH}`;
  let cluster: LocalControlPlane | undefined;
  let kubeconfig = process.env.KUBECONFIG;
  if (!kubeconfig) {
    cluster = await LocalControlPlane.start({
      dir: join(tmpdir(), `${name}-${process.pid}`),
      attached: true,
      binDir,
      ...options,
    });
    kubeconfig = cluster.kubeconfig;
  }
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfig);
  const client = new KubeClient(kc);
  await installCRDs(kc);
  return {
    kubeconfig,
    client,
    kc,
    label: cluster ? 'local control plane' : kubeconfig,
    stop: async () => {
      await Promise.all([...observers.values()].map((i) => i.stop()));
      observers.clear();
      await client.close();
      await cluster?.stop();
    },
  };
}

/** Watches the benches read the contenders' progress from, one per resource and namespace. */
const observers = new Map<string, Informer<KubeResource>>();

/**
 * The objects of a resource in a namespace as a watch shows them. A bench waits on many of them
 * (1,000 Applications or Kustomizations) for minutes: listing them all every second would load
 * the apiserver it measures, and load it more the faster a contender writes its status; one watch
 * costs next to nothing and shows each change as it is written.
 */
export async function watched<T extends KubeResource>(
  client: KubeClient,
  resource: ResourceRef,
  namespace: string,
): Promise<T[]> {
  const key = `${resource.apiVersion}/${resource.resource}/${namespace}`;
  let informer = observers.get(key);
  if (!informer) {
    informer = new Informer<KubeResource>(client, { resource, namespace });
    informer.start();
    observers.set(key, informer);
  }
  await informer.waitForSync(AbortSignal.timeout(60_000));
  return informer.list(namespace) as T[];
}

/**
 * Server-side apply of `count` ConfigMaps (raw-0…), 10 in flight, in seconds: the apiserver's own
 * throughput, the physical limit a controller's sync is measured against. With `dryRunFirst`, each
 * object is dry-run and then applied, the fewest requests a sync that checks every object before
 * applying any can send (ours and Flux's both do): the limit for a controller with that guarantee.
 */
export async function rawApply(
  client: KubeClient,
  ns: string,
  count: number,
  { dryRunFirst = false } = {},
): Promise<number> {
  const apply = (name: string, dryRun: boolean) =>
    client.patch(
      { apiVersion: 'v1', resource: 'configmaps' },
      ns,
      name,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name, namespace: ns },
        data: { v: '1' },
      }),
      PatchType.apply,
      { fieldManager: 'bench', force: true, ...(dryRun ? { dryRun: 'All' } : {}) },
    );
  const started = performance.now();
  await pool(
    Array.from({ length: count }, (_, i) => `raw-${i}`),
    10,
    async (name) => {
      if (dryRunFirst) await apply(name, true);
      await apply(name, false);
    },
  );
  return (performance.now() - started) / 1000;
}

/** Applications for `names`, each syncing apps/<name> of the repository into `namespace` (automated, prune, selfHeal). */
export async function createApps(
  client: KubeClient,
  namespace: string,
  repoURL: string,
  names: string[],
): Promise<void> {
  await pool(names, 16, async (name) => {
    await client.create(APPLICATION, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Application',
      metadata: { name, namespace },
      spec: {
        source: { repoURL, targetRevision: 'main', path: `apps/${name}` },
        destination: { namespace },
        syncPolicy: { automated: { prune: true, selfHeal: true } },
      },
    });
  });
}

/** How many Applications in `namespace` are Synced at `revision`. */
export async function countSynced(client: KubeClient, namespace: string, revision: string): Promise<number> {
  const apps = await watched<Application & KubeResource>(client, APPLICATION, namespace);
  return apps.filter((a) => a.status?.sync?.status === 'Synced' && a.status.sync.revision === revision)
    .length;
}

export async function createNamespace(client: KubeClient, name: string): Promise<string> {
  await client.create(
    { apiVersion: 'v1', resource: 'namespaces', namespaced: false },
    { metadata: { name } },
  );
  return name;
}

/**
 * Deletes a namespace and waits until it is gone: its pods no longer hold the (kwok) nodes'
 * capacity, so the next contender measured runs on the same empty cluster.
 */
export async function deleteNamespace(client: KubeClient, name: string): Promise<void> {
  const ref = { apiVersion: 'v1', resource: 'namespaces', namespaced: false };
  await client.delete(ref, '', name);
  await until(
    `namespace ${name} gone`,
    () =>
      client.get(ref, '', name).then(
        () => undefined,
        () => true,
      ),
    600_000,
    500,
  );
}

/**
 * A web metric answering {"ok": true} until failing is set, then {"ok": false}; `firstFailure` is
 * when it first answered false (performance.now()), 0 before.
 */
export async function switchableMetric(): Promise<{
  url: string;
  failing: boolean;
  firstFailure: number;
  close: () => void;
}> {
  const metric = { url: '', failing: false, firstFailure: 0, close: () => server.close() };
  const server = createServer((_req, res) => {
    if (metric.failing && metric.firstFailure === 0) metric.firstFailure = performance.now();
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ ok: !metric.failing }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  metric.url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  return metric;
}
