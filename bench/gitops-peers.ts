// GitOps, kube-actions against Flux, in the same run on the same control plane (issue 14). Flux's
// source-controller and kustomize-controller v1.9.6 and notification-controller v1.9.3, built from
// their Go modules (bench/peers/build-peers.sh), run as processes watching one namespace each, one
// contender after the other on the same generated repository of F apps × 5 ConfigMaps:
//   1. cold: the Applications / Kustomizations exist before the controllers start; time until all
//      are Synced / Ready at the commit, peak RSS and CPU seconds (Flux: the controllers summed),
//      and apiserver requests by verb, beside the raw server-side apply of as many objects;
//   2. idle: the same fleet for M minutes with nothing changing: requests by verb and CPU seconds;
//   3. push → applied with each one's webhook receiver (ours: /api/webhook; Flux: a github
//      Receiver in notification-controller), one app, over N commits.
// Both poll git and resync every 5 minutes (ours --poll-interval 5m; Flux interval 5m on the
// GitRepository and each Kustomization), and both have 10 workers (Flux --concurrent=10).
// Ratios are ours / Flux: below 1 is better.
//
//   node bench/gitops-peers.ts [--fleet 1000] [--idle-minutes 10] [--commits 20] [--sections 1,2,3]
// Uses the cluster in $KUBECONFIG when set, else starts a local control plane.
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import type { KubeClient } from '../src/core/kube/client.ts';
import type { KubeResource } from '../src/core/kube/resource.ts';
import { signature } from '../src/controller/sync/webhook.ts';
import { installCRDs } from '../test/cluster/crds.ts';
import { GitServer } from '../test/cluster/git-server.ts';
import { freePort } from '../test/cluster/ports.ts';
import {
  benchCluster,
  countSynced,
  createApps,
  createNamespace,
  delta,
  parseMetrics,
  pool,
  processUsage,
  rawApply,
  requestsByVerb,
  SECRET,
  sleep,
  spread,
  startController,
  until,
  watched,
} from './lib.ts';

const { values } = parseArgs({
  options: {
    fleet: { type: 'string', default: '1000' },
    'idle-minutes': { type: 'string', default: '10' },
    commits: { type: 'string', default: '20' },
    sections: { type: 'string', default: '1,2,3' },
  },
});
const FLEET = Number(values.fleet);
const IDLE_MS = Number(values['idle-minutes']) * 60_000;
const COMMITS = Number(values.commits);
const SECTIONS = new Set(values.sections.split(','));
const WORKERS = 10;
const INTERVAL = '5m';

const GITREPOSITORY = { apiVersion: 'source.toolkit.fluxcd.io/v1', resource: 'gitrepositories' };
const KUSTOMIZATION = { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', resource: 'kustomizations' };
const RECEIVER = { apiVersion: 'notification.toolkit.fluxcd.io/v1', resource: 'receivers' };
const SECRETS = { apiVersion: 'v1', resource: 'secrets' };

const configMap = (name: string, v: string) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  v: "${v}"\n`;

function ratio(ours: number, peer: number): string {
  return peer > 0 ? `${(ours / peer).toFixed(2)}x` : 'n/a';
}

const met = (ok: boolean) => (ok ? 'met' : 'NOT met');

function sum(maps: Map<string, number>[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of maps) for (const [k, v] of m) out.set(k, (out.get(k) ?? 0) + v);
  return out;
}

const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
const show = (m: Map<string, number>) =>
  [...m]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k} ${v}`)
    .join(', ') || 'none';

/** A contender running on one namespace: its processes, their metrics and their usage so far. */
interface Running {
  /** Requests by verb so far, over all its processes. */
  requests(): Promise<Map<string, number>>;
  /** Peak RSS (summed over its processes: an upper bound of the peak of the sum) and CPU seconds. */
  usage(): Promise<{ peakRssMiB: number; cpuSeconds: number }>;
  stop(): Promise<void>;
}

interface FluxProcess {
  pid: number;
  metricsPort: number;
  stop(): Promise<void>;
}

async function fluxDir(): Promise<string> {
  const { stdout } = await promisify(execFile)(
    resolve(import.meta.dirname, 'peers/build-peers.sh'),
    ['source-controller', 'kustomize-controller', 'notification-controller'],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  return stdout.trim().split('\n').at(-1)!;
}

/** One Flux controller as a process on the host, watching only `namespace`; ready once /readyz answers. */
async function startFluxController(
  dir: string,
  name: string,
  kubeconfig: string,
  namespace: string,
  args: string[],
): Promise<FluxProcess> {
  const [metricsPort, healthPort] = await Promise.all([freePort(), freePort()]);
  const logs: string[] = [];
  const child = spawn(
    join(dir, name),
    [
      `--metrics-addr=127.0.0.1:${metricsPort}`,
      `--health-addr=127.0.0.1:${healthPort}`,
      '--watch-all-namespaces=false',
      '--log-level=error',
      ...args,
    ],
    {
      env: { ...process.env, KUBECONFIG: kubeconfig, RUNTIME_NAMESPACE: namespace },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  for (const s of [child.stdout, child.stderr])
    s.on('data', (d: Buffer) => logs.push(...d.toString().split('\n').filter(Boolean)));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  };
  await until(
    `${name} to be ready`,
    async () => {
      if (child.exitCode !== null) throw new Error(`${name} exited:\n${logs.slice(-20).join('\n')}`);
      return (await fetch(`http://127.0.0.1:${healthPort}/readyz`).then(
        (r) => r.ok,
        () => false,
      ))
        ? true
        : undefined;
    },
    60_000,
    100,
  );
  return { pid: child.pid!, metricsPort, stop };
}

async function startFlux(
  dir: string,
  kubeconfig: string,
  namespace: string,
  withReceiver: boolean,
): Promise<Running & { receiverPort?: number }> {
  const storage = await mkdtemp(join(tmpdir(), 'bench-flux-storage-'));
  const [storagePort, eventsPort, receiverPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const events = withReceiver ? [`--events-addr=http://127.0.0.1:${eventsPort}/`] : [];
  const procs: FluxProcess[] = [];
  try {
    if (withReceiver)
      procs.push(
        await startFluxController(dir, 'notification-controller', kubeconfig, namespace, [
          `--events-addr=127.0.0.1:${eventsPort}`,
          `--receiverAddr=127.0.0.1:${receiverPort}`,
        ]),
      );
    procs.push(
      await startFluxController(dir, 'source-controller', kubeconfig, namespace, [
        `--storage-path=${storage}`,
        `--storage-addr=127.0.0.1:${storagePort}`,
        `--storage-adv-addr=127.0.0.1:${storagePort}`,
        `--concurrent=${WORKERS}`,
        ...events,
      ]),
      await startFluxController(dir, 'kustomize-controller', kubeconfig, namespace, [
        `--concurrent=${WORKERS}`,
        ...events,
      ]),
    );
  } catch (err) {
    for (const p of procs) await p.stop();
    throw err;
  }
  return {
    receiverPort: withReceiver ? receiverPort : undefined,
    requests: async () =>
      sum(
        await Promise.all(
          procs.map(async (p) =>
            requestsByVerb(
              parseMetrics(await (await fetch(`http://127.0.0.1:${p.metricsPort}/metrics`)).text()),
            ),
          ),
        ),
      ),
    usage: async () => {
      const all = await Promise.all(procs.map((p) => processUsage(p.pid)));
      return {
        peakRssMiB: all.reduce((t, u) => t + u.peakRssMiB, 0),
        cpuSeconds: all.reduce((t, u) => t + u.cpuSeconds, 0),
      };
    },
    stop: async () => {
      for (const p of procs) await p.stop();
      await rm(storage, { recursive: true, force: true });
    },
  };
}

async function startOurs(kubeconfig: string, namespace: string) {
  const c = await startController(kubeconfig, namespace, INTERVAL, WORKERS);
  return {
    webhookPort: c.webhookPort,
    requests: async () => {
      return requestsByVerb(await c.metrics());
    },
    usage: () => processUsage(c.pid),
    stop: c.stop,
  };
}

async function createKustomizations(client: KubeClient, ns: string, repoURL: string, names: string[]) {
  await client.create(GITREPOSITORY, {
    apiVersion: 'source.toolkit.fluxcd.io/v1',
    kind: 'GitRepository',
    metadata: { name: 'repo', namespace: ns },
    spec: { url: repoURL, ref: { branch: 'main' }, interval: INTERVAL },
  });
  await pool(names, 16, async (name) => {
    await client.create(KUSTOMIZATION, {
      apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
      kind: 'Kustomization',
      metadata: { name, namespace: ns },
      spec: {
        sourceRef: { kind: 'GitRepository', name: 'repo' },
        path: `./apps/${name}`,
        targetNamespace: ns,
        prune: true,
        interval: INTERVAL,
      },
    });
  });
}

interface Kustomization {
  status?: { lastAppliedRevision?: string; conditions?: { type: string; status: string }[] };
}

async function countReady(client: KubeClient, ns: string, revision: string): Promise<number> {
  const list = await watched<Kustomization & KubeResource>(client, KUSTOMIZATION, ns);
  return list.filter(
    (k) =>
      k.status?.lastAppliedRevision === `main@sha1:${revision}` &&
      k.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
  ).length;
}

/**
 * Milliseconds from each of COMMITS pushes' webhook (signed and headed as GitHub sends it) until
 * `applied(sha)` holds.
 */
async function pushLatencies(
  git: GitServer,
  repo: string,
  webhookURL: string,
  applied: (sha: string) => Promise<boolean>,
): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 1; i <= COMMITS; i++) {
    const sha = await git.commitFiles(repo, { 'apps/web/cm.yaml': configMap('web', String(i)) }, `v${i}`);
    const body = Buffer.from(
      // As GitHub sends it: the pushed ref and its new head (Flux's receiver reads neither).
      JSON.stringify({
        ref: 'refs/heads/main',
        after: sha,
        repository: { clone_url: git.url(repo), default_branch: 'main' },
      }),
    );
    const started = performance.now();
    const res = await fetch(webhookURL, {
      method: 'POST',
      body,
      headers: {
        'Content-Type': 'application/json',
        'X-GitHub-Event': 'push',
        'X-GitHub-Delivery': `bench-${i}`,
        'X-Hub-Signature-256': signature(SECRET, body),
      },
    });
    if (!res.ok) throw new Error(`${webhookURL} answered ${res.status}: ${await res.text()}`);
    await until(`commit ${i} applied`, async () => ((await applied(sha)) ? true : undefined), 60_000, 5);
    samples.push(performance.now() - started);
  }
  return samples;
}

async function main(): Promise<void> {
  const { kubeconfig, client, kc, label, stop } = await benchCluster('bench-gitops-peers');
  const dir = await fluxDir();
  for (const crds of ['source-controller-crds', 'kustomize-controller-crds', 'notification-controller-crds'])
    await installCRDs(kc, join(dir, crds));
  const git = await GitServer.start();
  const run = Date.now().toString(36);
  try {
    console.log(
      `kube-actions vs Flux (source/kustomize-controller v1.9.6, notification-controller v1.9.3) (${new Date().toISOString()}), ${label}`,
    );
    const names = Array.from({ length: FLEET }, (_, i) => `app-${String(i).padStart(4, '0')}`);
    const files: Record<string, string> = {};
    for (const n of names)
      for (let o = 0; o < 5; o++) files[`apps/${n}/cm-${o}.yaml`] = configMap(`${n}-${o}`, '1');
    await git.createRepo('fleet', files);
    const revision = await git.revParse('fleet');

    // 1 and 2: cold, then idle, each contender on its own namespace.
    if (SECTIONS.has('1') || SECTIONS.has('2')) {
      const rawSeconds = await rawApply(client, await createNamespace(client, `gp-raw-${run}`), FLEET * 5);
      const checkedSeconds = await rawApply(
        client,
        await createNamespace(client, `gp-raw-checked-${run}`),
        FLEET * 5,
        { dryRunFirst: true },
      );
      type Row = { seconds: number; rss: number; cpu: number; requests: Map<string, number> };
      const rows: Record<string, { cold: Row; idle?: { cpu: number; requests: Map<string, number> } }> = {};
      const contenders = [
        {
          name: 'kube-actions',
          prepare: (ns: string) => createApps(client, ns, git.url('fleet'), names),
          start: (ns: string) => startOurs(kubeconfig, ns),
          done: (ns: string) => countSynced(client, ns, revision),
        },
        {
          name: 'Flux',
          prepare: (ns: string) => createKustomizations(client, ns, git.url('fleet'), names),
          start: (ns: string) => startFlux(dir, kubeconfig, ns, false),
          done: (ns: string) => countReady(client, ns, revision),
        },
      ];
      for (const c of contenders) {
        const ns = await createNamespace(client, `gp-${c.name === 'Flux' ? 'flux' : 'ours'}-${run}`);
        await c.prepare(ns);
        const started = performance.now();
        const proc = await c.start(ns);
        try {
          await until(
            `${c.name}: the fleet applied`,
            async () => ((await c.done(ns)) === FLEET ? true : undefined),
            // Flux needs about an hour for 1,000 Kustomizations over one repository on 2 cores.
            Math.max(1_800_000, FLEET * 7_200),
            500,
          );
          const seconds = (performance.now() - started) / 1000;
          const u = await proc.usage();
          rows[c.name] = {
            cold: { seconds, rss: u.peakRssMiB, cpu: u.cpuSeconds, requests: await proc.requests() },
          };
          // Printed as soon as measured: a long run stopped later keeps what it has.
          console.log(
            `   (${c.name} cold: ${seconds.toFixed(1)} s, peak RSS ${u.peakRssMiB.toFixed(0)} MiB, CPU ${u.cpuSeconds.toFixed(1)} s)`,
          );
          if (SECTIONS.has('2')) {
            // Let the post-sync reconciles settle, then count an idle window.
            await sleep(30_000);
            const before = { requests: await proc.requests(), cpu: (await proc.usage()).cpuSeconds };
            await sleep(IDLE_MS);
            rows[c.name]!.idle = {
              requests: delta(await proc.requests(), before.requests),
              cpu: (await proc.usage()).cpuSeconds - before.cpu,
            };
          }
        } finally {
          await proc.stop();
        }
      }
      const o = rows['kube-actions']!;
      const f = rows.Flux!;
      console.log(
        `\n1. ${FLEET} apps × 5 objects from cold (ours: Applications; Flux: Kustomizations over one GitRepository)`,
      );
      console.log(
        `   raw server-side apply of ${FLEET * 5} ConfigMaps (10 in flight): ${rawSeconds.toFixed(1)} s; dry-run then apply of each (both check every object before applying): ${checkedSeconds.toFixed(1)} s`,
      );
      console.log(
        `   time to all applied: ours ${o.cold.seconds.toFixed(1)} s (${(o.cold.seconds / rawSeconds).toFixed(2)}x raw, ${(o.cold.seconds / checkedSeconds).toFixed(2)}x dry-run then apply), Flux ${f.cold.seconds.toFixed(1)} s (${(f.cold.seconds / rawSeconds).toFixed(2)}x raw): ${ratio(o.cold.seconds, f.cold.seconds)}, ours ${(f.cold.seconds / o.cold.seconds).toFixed(1)}x faster`,
      );
      console.log(
        `   peak RSS: ours ${o.cold.rss.toFixed(0)} MiB, Flux ${f.cold.rss.toFixed(0)} MiB (2 processes summed): ${ratio(o.cold.rss, f.cold.rss)}`,
      );
      console.log(
        `   CPU: ours ${o.cold.cpu.toFixed(1)} s, Flux ${f.cold.cpu.toFixed(1)} s: ${ratio(o.cold.cpu, f.cold.cpu)}`,
      );
      console.log(
        `   requests: ours ${total(o.cold.requests)} (${show(o.cold.requests)}); Flux ${total(f.cold.requests)} (${show(f.cold.requests)}): ${ratio(total(o.cold.requests), total(f.cold.requests))}`,
      );
      console.log(
        `   goals: ≤ 1.5x raw ${met(o.cold.seconds <= 1.5 * rawSeconds)}; peak RSS ≤ 150 MiB ${met(o.cold.rss <= 150)}; ≥ 5x faster than Flux ${met(f.cold.seconds >= 5 * o.cold.seconds)}`,
      );
      if (o.idle && f.idle) {
        console.log(
          `\n2. idle ${IDLE_MS / 60_000} min, the same fleet, nothing changing (poll/resync every ${INTERVAL})`,
        );
        console.log(
          `   requests: ours ${total(o.idle.requests)} (${show(o.idle.requests)}); Flux ${total(f.idle.requests)} (${show(f.idle.requests)}): ${ratio(total(o.idle.requests), total(f.idle.requests))}`,
        );
        console.log(
          `   CPU: ours ${o.idle.cpu.toFixed(1)} s, Flux ${f.idle.cpu.toFixed(1)} s: ${ratio(o.idle.cpu, f.idle.cpu)}`,
        );
      }
    }

    // 3. push → applied, each through its own webhook receiver.
    if (SECTIONS.has('3')) {
      const latencies: Record<string, number[]> = {};
      for (const name of ['kube-actions', 'Flux']) {
        const repo = `latency-${name === 'Flux' ? 'flux' : 'ours'}`;
        await git.createRepo(repo, { 'apps/web/cm.yaml': configMap('web', '0') });
        const ns = await createNamespace(client, `gp-lat-${name === 'Flux' ? 'flux' : 'ours'}-${run}`);
        const samples: number[] = [];
        if (name === 'kube-actions') {
          await createApps(client, ns, git.url(repo), ['web']);
          const proc = await startOurs(kubeconfig, ns);
          try {
            const first = await git.revParse(repo);
            await until(
              'the first sync',
              async () => ((await countSynced(client, ns, first)) === 1 ? true : undefined),
              60_000,
            );
            samples.push(
              ...(await pushLatencies(
                git,
                repo,
                `http://127.0.0.1:${proc.webhookPort}/api/webhook`,
                async (sha) => (await countSynced(client, ns, sha)) === 1,
              )),
            );
          } finally {
            await proc.stop();
          }
        } else {
          await createKustomizations(client, ns, git.url(repo), []);
          await client.create(KUSTOMIZATION, {
            apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
            kind: 'Kustomization',
            metadata: { name: 'web', namespace: ns },
            spec: {
              sourceRef: { kind: 'GitRepository', name: 'repo' },
              path: './apps/web',
              targetNamespace: ns,
              prune: true,
              interval: INTERVAL,
            },
          });
          await client.create(SECRETS, {
            apiVersion: 'v1',
            kind: 'Secret',
            metadata: { name: 'webhook-token', namespace: ns },
            stringData: { token: SECRET },
          });
          await client.create(RECEIVER, {
            apiVersion: 'notification.toolkit.fluxcd.io/v1',
            kind: 'Receiver',
            metadata: { name: 'github', namespace: ns },
            spec: {
              type: 'github',
              events: ['push'],
              secretRef: { name: 'webhook-token' },
              resources: [{ apiVersion: 'source.toolkit.fluxcd.io/v1', kind: 'GitRepository', name: 'repo' }],
            },
          });
          const proc = await startFlux(dir, kubeconfig, ns, true);
          try {
            const first = await git.revParse(repo);
            await until(
              'Flux: the first apply',
              async () => ((await countReady(client, ns, first)) === 1 ? true : undefined),
              120_000,
            );
            const path = await until(
              'the Receiver webhook path',
              async () =>
                (await client.get<{ status?: { webhookPath?: string } }>(RECEIVER, ns, 'github')).status
                  ?.webhookPath,
              60_000,
              100,
            );
            samples.push(
              ...(await pushLatencies(
                git,
                repo,
                `http://127.0.0.1:${proc.receiverPort}${path}`,
                async (sha) => (await countReady(client, ns, sha)) === 1,
              )),
            );
          } finally {
            await proc.stop();
          }
        }
        latencies[name] = samples.sort((a, b) => a - b);
      }
      const o = latencies['kube-actions']!;
      const f = latencies.Flux!;
      const median = (s: number[]) => s[Math.ceil(s.length / 2) - 1]!;
      console.log(`\n3. push → applied through each one's webhook receiver, ${COMMITS} commits (1 app):`);
      console.log(`   ours: ${spread(o)}`);
      console.log(`   Flux: ${spread(f)}`);
      console.log(`   p50 ratio: ${ratio(median(o), median(f))}`);
      console.log(
        `   goals: p50 ≤ 150 ms ${met(median(o) <= 150)}; p50 below Flux's ${met(median(o) < median(f))}`,
      );
    }
  } finally {
    await git.stop();
    await stop();
  }
}

await main();
