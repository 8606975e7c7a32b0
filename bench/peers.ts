// kube-actions against the real peers, in the same run on the same control plane (issue 14).
// Rollouts, ours vs Argo Rollouts v1.10.2 (built from its Go module, bench/peers/build-peers.sh),
// each a process watching its own namespace, one after the other on the same workload:
//   1. differential conformance over the test's specs and more: the mismatch count;
//   2. R concurrent canaries (2 replicas; setWeight 50, pause 1 s): time to all promoted, peak
//      RSS, CPU seconds;
//   3. pause expiry precision: how late the step after a 2 s pause starts, N rollouts;
//   4. a failing web measurement → 100% stable (analysis interval 1 s), N rollouts.
// Every figure of ours is printed beside the peer's with the ratio (ours / peer: below 1 is better).
//
//   node bench/peers.ts [--rollouts 200] [--samples 10] [--sections 1,2,3,4]
// Uses the cluster in $KUBECONFIG when set, else starts a local control plane.
import { parseArgs } from 'node:util';
import { PatchType, type KubeClient } from '../src/core/kube/client.ts';
import type { ResourceRef } from '../src/core/kube/objects.ts';
import type { KubeResource } from '../src/core/kube/resource.ts';
import { ROLLOUT, type ReplicaSet, type Rollout } from '../src/controller/rollout/types.ts';
import {
  ARGO_ROLLOUT,
  BENCH_SCENARIOS,
  CONFORMANCE_SCENARIOS,
  argoRolloutsDir,
  intendedDeviations,
  isIntended,
  runScenario,
  startArgoRollouts,
} from '../test/cluster/rollout-conformance.ts';
import {
  benchCluster,
  createNamespace,
  deleteNamespace,
  pct,
  pool,
  processUsage,
  spread,
  startController,
  switchableMetric,
  until,
  watched,
} from './lib.ts';

const { values } = parseArgs({
  options: {
    rollouts: { type: 'string', default: '200' },
    samples: { type: 'string', default: '10' },
    sections: { type: 'string', default: '1,2,3,4' },
    // Section 2 with one contender only ("kube-actions"), to try a change or a Node flag
    // (BENCH_NODE_FLAGS) without waiting for the peer; prints no ratio.
    only: { type: 'string' },
  },
});
const SECTIONS = new Set(values.sections.split(','));
const ROLLOUTS = Number(values.rollouts);
const SAMPLES = Number(values.samples);

/** A Rollout controller under test: its API group, and how to start it on a namespace. */
interface Contender {
  name: string;
  ref: ResourceRef;
  analysisTemplates: ResourceRef;
  start(namespace: string): Promise<{ pid: number; stop(): Promise<void> }>;
}

const template = (app: string, image: string) => ({
  metadata: { labels: { app } },
  spec: { containers: [{ name: 'main', image }] },
});

function ratio(ours: number, peer: number): string {
  return peer > 0 ? `${(ours / peer).toFixed(2)}x` : 'n/a';
}

async function main(): Promise<void> {
  // kube-controller-manager at 200 QPS: at its default 20, its ReplicaSet controller's pod
  // creates and deletes bound 200 concurrent canaries whichever controller drives them.
  const { kubeconfig, client, label, stop } = await benchCluster('bench-peers', {
    controllerManagerQPS: 200,
  });
  const argoDir = await argoRolloutsDir();
  const run = Date.now().toString(36);
  const contenders: Contender[] = [
    {
      name: 'kube-actions',
      ref: ROLLOUT,
      analysisTemplates: { apiVersion: 'kube-actions.dev/v1alpha1', resource: 'analysistemplates' },
      start: (ns) => startController(kubeconfig, ns, '1h', 10),
    },
    {
      name: 'Argo Rollouts',
      ref: ARGO_ROLLOUT,
      analysisTemplates: { apiVersion: 'argoproj.io/v1alpha1', resource: 'analysistemplates' },
      start: (ns) => startArgoRollouts(kubeconfig, ns, { dir: argoDir }),
    },
  ];
  const [ours, argo] = contenders as [Contender, Contender];
  try {
    console.log(`kube-actions vs Argo Rollouts v1.10.2 (${new Date().toISOString()}), ${label}`);

    // 1. Conformance.
    if (SECTIONS.has('1')) {
      const nsOurs = await createNamespace(client, `peers-conf-ours-${run}`);
      const nsArgo = await createNamespace(client, `peers-conf-argo-${run}`);
      const a = await ours.start(nsOurs);
      const b = await argo.start(nsArgo);
      try {
        const deviations = await intendedDeviations();
        const scenarios = [...CONFORMANCE_SCENARIOS, ...BENCH_SCENARIOS];
        const results = await Promise.all(
          scenarios.map((s) => runScenario(client, s, { ours: nsOurs, argo: nsArgo })),
        );
        const all = results.flatMap((r) => r.mismatches);
        const intended = all.filter((m) => isIntended(m, deviations));
        const checkpoints = results.reduce((n, r) => n + r.checkpoints.length, 0);
        console.log(`\n1. differential conformance: ${scenarios.length} specs, ${checkpoints} checkpoints`);
        console.log(
          `   mismatches: ${all.length - intended.length} unintended, ${intended.length} intended (README)`,
        );
        for (const m of all.filter((x) => !isIntended(x, deviations)))
          console.log(
            `   - ${m.scenario} @ ${m.checkpoint}: ${m.field}: ours ${JSON.stringify(m.ours)}, Argo ${JSON.stringify(m.argo)}`,
          );
      } finally {
        await a.stop();
        await b.stop();
      }
    }

    // 2. Many canaries at once.
    if (SECTIONS.has('2')) {
      const rows: { name: string; seconds: number; rss: number; cpu: number }[] = [];
      for (const c of contenders.filter((x) => !values.only || x.name === values.only)) {
        const ns = await createNamespace(client, `peers-many-${c.ref.apiVersion.split('.')[0]}-${run}`);
        const proc = await c.start(ns);
        try {
          const names = Array.from({ length: ROLLOUTS }, (_, i) => `r${String(i).padStart(3, '0')}`);
          await pool(names, 16, async (name) => {
            await createRollout(client, c.ref, ns, name, {
              replicas: 2,
              strategy: { canary: { steps: [{ setWeight: 50 }, { pause: { duration: 1 } }] } },
            });
          });
          const list = () => watched<Rollout & KubeResource>(client, c.ref, ns);
          const first = await until(
            `${c.name}: all created Healthy`,
            async () => {
              const items = await list();
              const ok = items.filter((r) => r.status?.phase === 'Healthy' && r.status.stableRS);
              return ok.length === ROLLOUTS
                ? new Map(ok.map((r) => [r.metadata.name, r.status!.stableRS!]))
                : undefined;
            },
            600_000,
            500,
          );
          const started = performance.now();
          await pool(names, 16, (name) => setImage(client, c.ref, ns, name, 'web:2'));
          await until(
            `${c.name}: all promoted`,
            async () => {
              const done = (await list()).filter(
                (r) =>
                  r.status?.phase === 'Healthy' &&
                  r.status.stableRS !== first.get(r.metadata.name) &&
                  r.status.stableRS === r.status.currentPodHash,
              );
              return done.length === ROLLOUTS ? true : undefined;
            },
            1_200_000,
            250,
          );
          const seconds = (performance.now() - started) / 1000;
          const usage = await processUsage(proc.pid);
          rows.push({ name: c.name, seconds, rss: usage.peakRssMiB, cpu: usage.cpuSeconds });
        } finally {
          await proc.stop();
          // Its 400 pods would hold the nodes' capacity the next contender needs.
          await deleteNamespace(client, ns);
        }
      }
      const [o, p] = rows as [(typeof rows)[0], (typeof rows)[0] | undefined];
      console.log(
        `\n2. ${ROLLOUTS} concurrent canaries (2 replicas; setWeight 50, pause 1 s), one controller each:`,
      );
      console.log(
        `   ${'controller'.padEnd(14)} ${'all promoted'.padStart(13)} ${'peak RSS'.padStart(10)} ${'CPU (whole run)'.padStart(16)}`,
      );
      for (const r of rows)
        console.log(
          `   ${r.name.padEnd(14)} ${`${r.seconds.toFixed(1)} s`.padStart(13)} ${`${r.rss.toFixed(0)} MiB`.padStart(10)} ${`${r.cpu.toFixed(1)} s`.padStart(16)}`,
        );
      if (p) {
        console.log(
          `   ratio (ours / Argo): time ${ratio(o.seconds, p.seconds)}, peak RSS ${ratio(o.rss, p.rss)}, CPU ${ratio(o.cpu, p.cpu)}`,
        );
        console.log(
          `   goals: faster than Argo ${o.seconds < p.seconds ? 'met' : 'NOT met'}; peak RSS no higher ${o.rss <= p.rss ? 'met' : 'NOT met'}`,
        );
      }
    }

    // 3. Pause expiry precision.
    if (SECTIONS.has('3')) {
      const lines: string[] = [];
      const p50s: number[] = [];
      for (const c of contenders) {
        const ns = await createNamespace(client, `peers-pause-${c.ref.apiVersion.split('.')[0]}-${run}`);
        const proc = await c.start(ns);
        try {
          const lateness: number[] = [];
          for (let i = 0; i < SAMPLES; i++) {
            const name = `p${i}`;
            await createRollout(client, c.ref, ns, name, {
              replicas: 1,
              strategy: {
                canary: { steps: [{ setWeight: 50 }, { pause: { duration: 2 } }, { setWeight: 100 }] },
              },
            });
            await untilPhase(client, c.ref, ns, name, 'Healthy');
            await setImage(client, c.ref, ns, name, 'web:2');
            const pausedAt = await until(
              `${c.name}: ${name} paused`,
              async () => {
                const ro = await client.get<Rollout>(c.ref, ns, name);
                const p = ro.status?.pauseConditions?.[0];
                return ro.status?.currentStepIndex === 1 && p ? Date.parse(p.startTime) : undefined;
              },
              60_000,
              10,
            );
            const movedAt = await until(
              `${c.name}: ${name} past the pause`,
              async () =>
                ((await client.get<Rollout>(c.ref, ns, name)).status?.currentStepIndex ?? 0) >= 2
                  ? Date.now()
                  : undefined,
              60_000,
              5,
            );
            lateness.push(movedAt - (pausedAt + 2000));
          }
          lateness.sort((a, b) => a - b);
          p50s.push(pct(lateness, 50));
          lines.push(`   ${c.name.padEnd(14)} late by ${spread(lateness)}`);
        } finally {
          await proc.stop();
        }
      }
      console.log(
        `\n3. pause expiry → next step, ${SAMPLES} rollouts each (pause 2 s; includes 5 ms polling;`,
      );
      console.log('   pause start times are whole seconds in both, so lateness is measured from them):');
      for (const l of lines) console.log(l);
      console.log(`   ratio of medians (ours / Argo): ${ratio(p50s[0]!, p50s[1]!)}`);
    }

    // 4. A failing measurement → 100% stable.
    if (SECTIONS.has('4')) {
      const lines: string[] = [];
      const p50s: number[] = [];
      for (const c of contenders) {
        const ns = await createNamespace(client, `peers-abort-${c.ref.apiVersion.split('.')[0]}-${run}`);
        const metric = await switchableMetric();
        const url = metric.url;
        const proc = await c.start(ns);
        try {
          await client.create(c.analysisTemplates, {
            apiVersion: c.analysisTemplates.apiVersion,
            kind: 'AnalysisTemplate',
            metadata: { name: 'ok', namespace: ns },
            spec: {
              metrics: [
                {
                  name: 'ok',
                  interval: '1s',
                  failureLimit: 0,
                  successCondition: 'result == true',
                  provider: { web: { url, jsonPath: '{$.ok}' } },
                },
              ],
            },
          } as never);
          const samples: number[] = [];
          for (let i = 0; i < SAMPLES; i++) {
            const name = `a${i}`;
            await service(client, ns, `${name}-stable`, name);
            await service(client, ns, `${name}-canary`, name);
            await createRollout(client, c.ref, ns, name, {
              replicas: 2,
              strategy: {
                canary: {
                  stableService: `${name}-stable`,
                  canaryService: `${name}-canary`,
                  analysis: { templates: [{ templateName: 'ok' }] },
                  steps: [{ setWeight: 50 }, { pause: {} }],
                },
              },
            });
            await untilPhase(client, c.ref, ns, name, 'Healthy');
            const stable = (await client.get<Rollout>(c.ref, ns, name)).status!.stableRS!;
            metric.failing = false;
            metric.firstFailure = 0;
            await setImage(client, c.ref, ns, name, 'web:2');
            await untilPhase(client, c.ref, ns, name, 'Paused');
            metric.failing = true;
            const back = await until(
              `${c.name}: ${name} back to stable`,
              async () => {
                const svc = await client.get<{ spec: { selector: Record<string, string> } } & object>(
                  { apiVersion: 'v1', resource: 'services', namespaced: true },
                  ns,
                  `${name}-canary`,
                );
                const rss = await client.request<{ items: ReplicaSet[] }>(
                  'GET',
                  `/apis/apps/v1/namespaces/${ns}/replicasets`,
                );
                const canaryPods = rss.items
                  .filter((rs) => rs.metadata.ownerReferences?.some((o) => o.name === name))
                  .filter((rs) => rs.metadata.labels?.['rollouts-pod-template-hash'] !== stable)
                  .reduce((n, rs) => n + (rs.spec.replicas ?? 0), 0);
                // 100% stable: the canary Service selects the stable pods, or the canary has none.
                return metric.firstFailure &&
                  (svc.spec.selector['rollouts-pod-template-hash'] === stable || canaryPods === 0)
                  ? performance.now()
                  : undefined;
              },
              60_000,
              5,
            );
            samples.push(back - metric.firstFailure);
          }
          samples.sort((a, b) => a - b);
          p50s.push(pct(samples, 50));
          lines.push(`   ${c.name.padEnd(14)} ${spread(samples)}`);
        } finally {
          await proc.stop();
          metric.close();
        }
      }
      console.log(
        `\n4. first failed measurement → 100% stable, ${SAMPLES} rollouts each (interval 1 s; 5 ms polling):`,
      );
      for (const l of lines) console.log(l);
      console.log(`   ratio of medians (ours / Argo): ${ratio(p50s[0]!, p50s[1]!)}`);
    }
  } finally {
    await stop();
  }
}

function createRollout(
  client: KubeClient,
  ref: ResourceRef,
  ns: string,
  name: string,
  spec: Record<string, unknown>,
) {
  return client.create(ref, {
    apiVersion: ref.apiVersion,
    kind: 'Rollout',
    metadata: { name, namespace: ns },
    spec: { selector: { matchLabels: { app: name } }, template: template(name, 'web:1'), ...spec },
  } as never);
}

async function setImage(
  client: KubeClient,
  ref: ResourceRef,
  ns: string,
  name: string,
  image: string,
): Promise<void> {
  await client.patch(ref, ns, name, { spec: { template: template(name, image) } }, PatchType.merge);
}

function service(client: KubeClient, ns: string, name: string, app: string) {
  return client.create({ apiVersion: 'v1', resource: 'services', namespaced: true }, {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: ns },
    spec: { selector: { app }, ports: [{ port: 80 }] },
  } as never);
}

function untilPhase(client: KubeClient, ref: ResourceRef, ns: string, name: string, phase: string) {
  return until(
    `${name} ${phase}`,
    async () => ((await client.get<Rollout>(ref, ns, name)).status?.phase === phase ? true : undefined),
    60_000,
    20,
  );
}

await main();
