// Benchmark of the Rollout controller on a real control plane, the controller running as it ships
// (`kube-actions controller`, the bundled CLI, in its own process). Prints:
//   1. time from the first failed measurement to 100% stable traffic (analysis interval 1 s);
//   2. step latency after a pause expires (how late the next step starts), over N rollouts;
//   3. R concurrent rollouts on one controller: time until all are promoted, and peak RSS.
//
//   node bench/rollout.ts [--pauses 10] [--rollouts 200]
// Uses the cluster in $KUBECONFIG when set, else starts a local control plane.
import { parseArgs } from 'node:util';
import { PatchType } from '../src/core/kube/client.ts';
import { podTemplateHash } from '../src/controller/rollout/replicas.ts';
import { ROLLOUT, type ReplicaSet, type Rollout } from '../src/controller/rollout/types.ts';
import {
  benchCluster,
  createNamespace,
  pool,
  spread,
  startController,
  switchableMetric,
  until,
} from './lib.ts';

const { values } = parseArgs({
  options: { pauses: { type: 'string', default: '10' }, rollouts: { type: 'string', default: '200' } },
});
const PAUSES = Number(values.pauses);
const ROLLOUTS = Number(values.rollouts);

const template = (app: string, image: string) => ({
  metadata: { labels: { app } },
  spec: { containers: [{ name: 'main', image }] },
});

async function main(): Promise<void> {
  const { kubeconfig, client, label, stop } = await benchCluster('bench-rollout');
  const run = Date.now().toString(36);
  const get = (ns: string, name: string) => client.get<Rollout>(ROLLOUT, ns, name);
  const rollout = (ns: string, name: string, spec: Record<string, unknown>) =>
    client.create(ROLLOUT, {
      apiVersion: ROLLOUT.apiVersion,
      kind: 'Rollout',
      metadata: { name, namespace: ns },
      spec,
    } as never);
  const setImage = (ns: string, name: string, image: string) =>
    client.patch(ROLLOUT, ns, name, { spec: { template: template(name, image) } }, PatchType.merge);
  try {
    console.log(`kube-actions rollout benchmark (${new Date().toISOString()}), ${label}`);

    // 1. A failing measurement → traffic 100% stable.
    {
      const ns = await createNamespace(client, `bench-abort-${run}`);
      const metric = await switchableMetric();
      const url = metric.url;
      const controller = await startController(kubeconfig, ns, '1h', 4);
      try {
        await client.create({ apiVersion: 'kube-actions.dev/v1alpha1', resource: 'analysistemplates' }, {
          apiVersion: 'kube-actions.dev/v1alpha1',
          kind: 'AnalysisTemplate',
          metadata: { name: 'ok', namespace: ns },
          spec: {
            metrics: [
              {
                name: 'ok',
                interval: '1s',
                successCondition: 'result == true',
                provider: { web: { url, jsonPath: '{$.ok}' } },
              },
            ],
          },
        } as never);
        await rollout(ns, 'pay', {
          replicas: 4,
          selector: { matchLabels: { app: 'pay' } },
          template: template('pay', 'pay:1'),
          strategy: {
            canary: {
              analysis: { templates: [{ templateName: 'ok' }] },
              steps: [{ setWeight: 50 }, { pause: {} }],
            },
          },
        });
        await until(
          'pay Healthy',
          async () => ((await get(ns, 'pay')).status?.phase === 'Healthy' ? true : undefined),
          60_000,
        );
        await setImage(ns, 'pay', 'pay:2');
        const h2 = podTemplateHash(template('pay', 'pay:2'));
        await until(
          'the canary paused with background analysis running',
          async () => {
            const ro = await get(ns, 'pay');
            return ro.status?.phase === 'Paused' &&
              ro.status.canary?.currentBackgroundAnalysisRunStatus?.status === 'Running'
              ? true
              : undefined;
          },
          60_000,
        );
        metric.failing = true;
        const stableAt = await until(
          '100% stable',
          async () => {
            const ro = await get(ns, 'pay');
            const rss = (
              await client.request<{ items: ReplicaSet[] }>(
                'GET',
                `/apis/apps/v1/namespaces/${ns}/replicasets`,
              )
            ).items;
            const canary = rss.find((rs) => rs.metadata.labels?.['rollouts-pod-template-hash'] === h2);
            return ro.status?.abort &&
              ro.status.canary?.weights?.stable.weight === 100 &&
              canary?.spec.replicas === 0
              ? performance.now()
              : undefined;
          },
          60_000,
          10,
        );
        console.log(
          `\n1. failed measurement → 100% stable (background analysis, interval 1 s): ${(stableAt - metric.firstFailure).toFixed(0)} ms`,
        );
      } finally {
        await controller.stop();
        metric.close();
      }
    }

    // 2. Pause expiry → next step.
    {
      const ns = await createNamespace(client, `bench-pause-${run}`);
      const controller = await startController(kubeconfig, ns, '1h', 4);
      try {
        const names = Array.from({ length: PAUSES }, (_, i) => `p${i}`);
        for (const name of names) {
          await rollout(ns, name, {
            replicas: 1,
            selector: { matchLabels: { app: name } },
            template: template(name, 'web:1'),
            strategy: {
              canary: { steps: [{ setWeight: 50 }, { pause: { duration: 2 } }, { setWeight: 100 }] },
            },
          });
        }
        await until(
          'all Healthy',
          async () => {
            const all = await Promise.all(names.map((n) => get(ns, n)));
            return all.every((r) => r.status?.phase === 'Healthy') ? true : undefined;
          },
          60_000,
        );
        const lateness: number[] = [];
        for (const name of names) {
          await setImage(ns, name, 'web:2');
          const pausedAt = await until(
            `${name} paused`,
            async () => {
              const ro = await get(ns, name);
              const p = ro.status?.pauseConditions?.[0];
              return ro.status?.currentStepIndex === 1 && p ? Date.parse(p.startTime) : undefined;
            },
            30_000,
            10,
          );
          const movedAt = await until(
            `${name} past the pause`,
            async () => (((await get(ns, name)).status?.currentStepIndex ?? 0) >= 2 ? Date.now() : undefined),
            30_000,
            5,
          );
          lateness.push(movedAt - (pausedAt + 2000));
        }
        lateness.sort((a, b) => a - b);
        console.log(`\n2. pause expiry → next step, ${PAUSES} rollouts (pause 2 s; includes 5 ms polling):`);
        console.log(`   late by ${spread(lateness)}`);
      } finally {
        await controller.stop();
      }
    }

    // 2b. Scale-down deadline → the old revision scaled to 0 (a requeue for the deadline, not a poll).
    {
      const ns = await createNamespace(client, `bench-deadline-${run}`);
      const controller = await startController(kubeconfig, ns, '1h', 4);
      try {
        const lateness: number[] = [];
        for (let i = 0; i < PAUSES; i++) {
          const name = `d${i}`;
          await client.create({ apiVersion: 'v1', resource: 'services', namespaced: true }, {
            apiVersion: 'v1',
            kind: 'Service',
            metadata: { name, namespace: ns },
            spec: { selector: { app: name }, ports: [{ port: 80 }] },
          } as never);
          await rollout(ns, name, {
            replicas: 1,
            selector: { matchLabels: { app: name } },
            template: template(name, 'web:1'),
            strategy: { blueGreen: { activeService: name, scaleDownDelaySeconds: 2 } },
          });
          await until(
            `${name} Healthy`,
            async () => ((await get(ns, name)).status?.phase === 'Healthy' ? true : undefined),
            60_000,
          );
          await setImage(ns, name, 'web:2');
          const old = podTemplateHash(template(name, 'web:1'));
          const oldRS = async () =>
            (
              await client.request<{ items: ReplicaSet[] }>(
                'GET',
                `/apis/apps/v1/namespaces/${ns}/replicasets`,
              )
            ).items.find((rs) => rs.metadata.labels?.['rollouts-pod-template-hash'] === old);
          const deadline = await until(
            `${name} scale-down deadline`,
            async () => {
              const at = (await oldRS())?.metadata.annotations?.[
                'argo-rollouts.argoproj.io/scale-down-deadline'
              ];
              return at ? Date.parse(at) : undefined;
            },
            30_000,
            10,
          );
          const scaledAt = await until(
            `${name} old revision at 0`,
            async () => ((await oldRS())?.spec.replicas === 0 ? Date.now() : undefined),
            30_000,
            5,
          );
          lateness.push(scaledAt - deadline);
        }
        lateness.sort((a, b) => a - b);
        console.log(
          `\n2b. scale-down deadline → old revision at 0, ${PAUSES} rollouts (delay 2 s; includes 5 ms polling):`,
        );
        console.log(`   late by ${spread(lateness)}`);
      } finally {
        await controller.stop();
      }
    }

    // 3. Many rollouts at once.
    {
      const ns = await createNamespace(client, `bench-many-${run}`);
      const controller = await startController(kubeconfig, ns, '1h', 10);
      try {
        const names = Array.from({ length: ROLLOUTS }, (_, i) => `r${String(i).padStart(3, '0')}`);
        await pool(names, 16, async (name) => {
          await rollout(ns, name, {
            replicas: 2,
            selector: { matchLabels: { app: name } },
            template: template(name, 'web:1'),
            strategy: { canary: { steps: [{ setWeight: 50 }, { pause: { duration: 1 } }] } },
          });
        });
        const healthy = async (image: string) => {
          const list = await client.request<{ items: Rollout[] }>(
            'GET',
            `/apis/kube-actions.dev/v1alpha1/namespaces/${ns}/rollouts`,
          );
          return list.items.filter(
            (r) =>
              r.status?.phase === 'Healthy' &&
              r.status.stableRS === podTemplateHash(template(r.metadata.name, image)),
          ).length;
        };
        await until(
          'all created Healthy',
          async () => ((await healthy('web:1')) === ROLLOUTS ? true : undefined),
          600_000,
          500,
        );
        const started = performance.now();
        await pool(names, 16, (name) => setImage(ns, name, 'web:2').then(() => undefined));
        await until(
          'all promoted',
          async () => ((await healthy('web:2')) === ROLLOUTS ? true : undefined),
          1_200_000,
          250,
        );
        const seconds = (performance.now() - started) / 1000;
        console.log(
          `\n3. ${ROLLOUTS} concurrent canary rollouts (2 replicas; setWeight 50, pause 1 s), one controller:`,
        );
        console.log(
          `   all promoted in ${seconds.toFixed(1)} s; controller peak RSS ${(await controller.peakRssMiB()).toFixed(0)} MiB`,
        );
      } finally {
        await controller.stop();
      }
    }
  } finally {
    await stop();
  }
}

await main();
