// Benchmark of the Application controller on a real control plane, the controller running as it
// ships (`kube-actions controller`, the bundled CLI, in its own process). Prints:
//   1. push → Synced latency with the webhook, p50/p99 over N commits;
//   2. API requests during an idle resync of A apps × O objects (goal: no writes, no per-object GETs);
//   3. time and peak RSS of the controller to sync F apps × 5 objects from cold, next to the raw
//      server-side apply throughput of the same apiserver measured in the same run (the limit).
//
//   node bench/sync.ts [--commits 20] [--idle-apps 100] [--fleet 1000] [--sections 1,2,3]
// BENCH_PROFILE_DIR=dir also writes the controllers' CPU profiles there, and a heap snapshot of
// section 3's controller once the fleet is Synced (see bench/README.md).
// Uses the cluster in $KUBECONFIG when set, else starts a local control plane.
import { parseArgs } from 'node:util';
import type { KubeClient } from '../src/core/kube/client.ts';
import { signature } from '../src/controller/sync/webhook.ts';
import { GitServer } from '../test/cluster/git-server.ts';
import {
  benchCluster,
  countSynced,
  createApps,
  createNamespace,
  delta,
  spread,
  rawApply,
  requestsByVerb,
  SECRET,
  sleep,
  startController,
  until,
} from './lib.ts';

const { values } = parseArgs({
  options: {
    commits: { type: 'string', default: '20' },
    'idle-apps': { type: 'string', default: '100' },
    fleet: { type: 'string', default: '1000' },
    sections: { type: 'string', default: '1,2,3' },
  },
});
const SECTIONS = new Set(values.sections.split(','));
const COMMITS = Number(values.commits);
const IDLE_APPS = Number(values['idle-apps']);
const FLEET = Number(values.fleet);

const configMap = (name: string, v: string) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  v: "${v}"\n`;
async function main(): Promise<void> {
  const { kubeconfig, client, label, stop } = await benchCluster('bench-sync');
  const namespace = (_client: KubeClient, name: string) => createNamespace(client, name);
  const git = await GitServer.start();
  const run = Date.now().toString(36);
  try {
    console.log(`kube-actions sync benchmark (${new Date().toISOString()}), ${label}`);

    // 1. push → Synced with the webhook.
    if (SECTIONS.has('1')) {
      const ns = await namespace(client, `bench-latency-${run}`);
      await git.createRepo('latency', { 'apps/web/cm.yaml': configMap('web', '0') });
      const controller = await startController(kubeconfig, ns, '1h', 4);
      try {
        await createApps(client, ns, git.url('latency'), ['web']);
        await until(
          'the first sync',
          async () =>
            (await countSynced(client, ns, await git.revParse('latency'))) === 1 ? true : undefined,
          60_000,
        );
        const latencies: number[] = [];
        for (let i = 1; i <= COMMITS; i++) {
          const sha = await git.commitFiles(
            'latency',
            { 'apps/web/cm.yaml': configMap('web', String(i)) },
            `v${i}`,
          );
          const body = JSON.stringify({
            ref: 'refs/heads/main',
            after: sha,
            repository: { clone_url: git.url('latency'), default_branch: 'main' },
          });
          const started = performance.now();
          const res = await fetch(`http://127.0.0.1:${controller.webhookPort}/api/webhook`, {
            method: 'POST',
            body,
            headers: {
              'X-GitHub-Event': 'push',
              'X-Hub-Signature-256': signature(SECRET, Buffer.from(body)),
            },
          });
          if (!res.ok) throw new Error(`webhook answered ${res.status}`);
          await until(
            `commit ${i} to be Synced`,
            async () => ((await countSynced(client, ns, sha)) === 1 ? true : undefined),
            30_000,
            5,
          );
          latencies.push(performance.now() - started);
        }
        latencies.sort((a, b) => a - b);
        console.log(`\n1. push → Synced with the webhook, ${COMMITS} commits (1 app, poll interval 1h):`);
        console.log(`   ${spread(latencies)}`);
      } finally {
        await controller.stop();
      }
    }

    // 2. Idle resync of IDLE_APPS apps × 10 objects.
    if (SECTIONS.has('2')) {
      const ns = await namespace(client, `bench-idle-${run}`);
      const names = Array.from({ length: IDLE_APPS }, (_, i) => `idle-${String(i).padStart(3, '0')}`);
      const files: Record<string, string> = {};
      for (const n of names)
        for (let o = 0; o < 10; o++) files[`apps/${n}/cm-${o}.yaml`] = configMap(`${n}-${o}`, '1');
      await git.createRepo('idle', files);
      const revision = await git.revParse('idle');
      const controller = await startController(kubeconfig, ns, '10s', 10);
      try {
        const started = performance.now();
        await createApps(client, ns, git.url('idle'), names);
        await until(
          'all idle apps Synced',
          async () => ((await countSynced(client, ns, revision)) === IDLE_APPS ? true : undefined),
          600_000,
          250,
        );
        const synced = (performance.now() - started) / 1000;
        // Let the post-sync reconciles settle, then count one whole poll interval of requests.
        await sleep(12_000);
        const before = requestsByVerb(await controller.metrics());
        const other = (m: Map<string, number>) => ({
          lsRemote: m.get('kube_actions_git_ls_remote_total') ?? 0,
          renders: m.get('kube_actions_renders_total') ?? 0,
          dryRuns: m.get('kube_actions_dry_runs_total') ?? 0,
          reconciles: [...m]
            .filter(([k]) => k.startsWith('controller_runtime_reconcile_total'))
            .reduce((t, [, v]) => t + v, 0),
        });
        const otherBefore = other(await controller.metrics());
        await sleep(20_000);
        const afterMetrics = await controller.metrics();
        const after = requestsByVerb(afterMetrics);
        const otherAfter = other(afterMetrics);
        const counts = Object.fromEntries(delta(after, before));
        const writes = ['create', 'update', 'patch', 'delete'].reduce((s, v) => s + (counts[v] ?? 0), 0);
        console.log(
          `\n2. idle resync, ${IDLE_APPS} apps × 10 objects (synced from cold in ${synced.toFixed(1)} s), requests in 20 s = 2 poll intervals:`,
        );
        console.log(
          `   by verb: ${JSON.stringify(counts)}; writes: ${writes}; GETs: ${counts.get ?? 0} (objects: ${IDLE_APPS * 10})`,
        );
        console.log(
          `   reconciles ${otherAfter.reconciles - otherBefore.reconciles}, git ls-remote ${otherAfter.lsRemote - otherBefore.lsRemote} (one repository), renders ${otherAfter.renders - otherBefore.renders}, dry-runs ${otherAfter.dryRuns - otherBefore.dryRuns}`,
        );
      } finally {
        await controller.stop();
      }
    }

    // 3. FLEET apps × 5 objects from cold, and the apiserver's raw server-side apply throughput.
    if (SECTIONS.has('3')) {
      const raw = await namespace(client, `bench-raw-${run}`);
      const rawSeconds = await rawApply(client, raw, FLEET * 5);
      const rawRate = (FLEET * 5) / rawSeconds;
      const checkedSeconds = await rawApply(
        client,
        await namespace(client, `bench-raw-checked-${run}`),
        FLEET * 5,
        {
          dryRunFirst: true,
        },
      );

      const ns = await namespace(client, `bench-fleet-${run}`);
      const names = Array.from({ length: FLEET }, (_, i) => `fleet-${String(i).padStart(4, '0')}`);
      const files: Record<string, string> = {};
      for (const n of names)
        for (let o = 0; o < 5; o++) files[`apps/${n}/cm-${o}.yaml`] = configMap(`${n}-${o}`, '1');
      await git.createRepo('fleet', files);
      const revision = await git.revParse('fleet');
      await createApps(client, ns, git.url('fleet'), names);
      // The Applications exist before the controller starts: a cold start over the whole fleet,
      // timed from the controller's launch.
      const started = performance.now();
      const controller = await startController(kubeconfig, ns, '3m', 10);
      try {
        await until(
          'the fleet Synced',
          async () => ((await countSynced(client, ns, revision)) === FLEET ? true : undefined),
          1_800_000,
          1000,
        );
        const seconds = (performance.now() - started) / 1000;
        const rss = await controller.peakRssMiB();
        const metrics = await controller.metrics();
        const requests = requestsByVerb(metrics);
        console.log(
          `\n3. ${FLEET} apps × 5 objects from cold: ${seconds.toFixed(1)} s (${((FLEET * 5) / seconds).toFixed(0)} objects/s), controller peak RSS ${rss.toFixed(0)} MiB`,
        );
        console.log(
          `   requests: ${JSON.stringify(Object.fromEntries(requests))}; dry-runs ${metrics.get('kube_actions_dry_runs_total') ?? 0} (objects: ${FLEET * 5})`,
        );
        console.log(
          `   raw server-side apply of ${FLEET * 5} ConfigMaps (10 in flight) on this apiserver: ${rawSeconds.toFixed(1)} s, ${rawRate.toFixed(0)} objects/s`,
        );
        console.log(
          `   raw dry-run then apply of each (the fewest requests a sync that checks before it applies can send): ${checkedSeconds.toFixed(1)} s`,
        );
        console.log(
          `   ratio: the controller reaches ${(((FLEET * 5) / seconds / rawRate) * 100).toFixed(0)}% of raw apply throughput; ${(seconds / rawSeconds).toFixed(2)}x raw apply's time, ${(seconds / checkedSeconds).toFixed(2)}x dry-run then apply's`,
        );
        console.log('   (Flux on the same workload, in the same run: bench/gitops-peers.ts)');
        const snapshot = await controller.heapSnapshot();
        if (snapshot) console.log(`   heap snapshot of the synced controller: ${snapshot}`);
      } finally {
        await controller.stop();
      }
    }
  } finally {
    await git.stop();
    await stop();
  }
}

await main();
