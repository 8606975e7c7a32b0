// The Rollout controller on the real control plane, run as it runs in the cluster (manager, work
// queue, informers, the analysis controller beside it): ReplicaSets become available through
// kube-controller-manager and kwok, Services and Ingresses are real objects, and timed steps
// (pauses, scale-down deadlines) are reached by the controller's own requeues.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { KubeClient } from '../../src/core/kube/client.ts';
import { Logger, silentLogger } from '../../src/controller/runtime/log.ts';
import { Manager } from '../../src/controller/runtime/manager.ts';
import type { Informer } from '../../src/controller/runtime/informer.ts';
import type { KubeObject } from '../../src/core/kube/objects.ts';
import { canaryIngressName } from '../../src/controller/rollout/nginx.ts';
import { podTemplateHash } from '../../src/controller/rollout/replicas.ts';
import {
  informerCache,
  rolloutInformers,
  setupRolloutController,
} from '../../src/controller/rollout/controller.ts';
import { RolloutReconciler } from '../../src/controller/rollout/reconciler.ts';
import { setupAnalysisController } from '../../src/controller/analysis/controller.ts';
import { createServer, type Server } from 'node:http';
import { parse } from 'yaml';
import {
  INGRESSES,
  POD_TEMPLATE_HASH,
  ROLLOUT,
  SCALE_DOWN_DEADLINE,
  SERVICES,
  type ReplicaSet,
  type Rollout,
} from '../../src/controller/rollout/types.ts';
import { installCRDs } from '../cluster/crds.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const ns = useTestNamespace('rollout');
let client: KubeClient;
let manager: Manager;

/** The controller process: a fresh manager, as after a restart (all state comes from the cluster). */
async function startController(): Promise<void> {
  manager = new Manager({
    kubeConfig: ns.kc,
    logger: process.env.ROLLOUT_TEST_LOG ? new Logger({ level: 'info' }) : silentLogger,
  });
  setupRolloutController(manager, { namespace: ns.name });
  setupAnalysisController(manager, { namespace: ns.name });
  await manager.start();
  await eventually('the controller synced', () => Promise.resolve(manager.readiness().ready || undefined));
}

beforeAll(async () => {
  await installCRDs(ns.kc);
  client = new KubeClient(ns.kc);
  await startController();
});
afterAll(async () => {
  await manager?.stop();
  await client?.close();
});

const template = (app: string, image: string) => ({
  metadata: { labels: { app } },
  spec: { containers: [{ name: 'main', image }] },
});

/** Creates a Rollout whose pods are labelled app=<name>, image registry.example/<name>:1; returns that template. */
async function createRollout(
  name: string,
  spec: Record<string, unknown>,
): Promise<ReturnType<typeof template>> {
  const first = template(name, `registry.example/${name}:1`);
  await client.create(ROLLOUT, {
    apiVersion: ROLLOUT.apiVersion,
    kind: 'Rollout',
    metadata: { name, namespace: ns.name },
    spec: { selector: { matchLabels: { app: name } }, template: first, ...spec },
  } as never);
  return first;
}

async function service(name: string, app: string): Promise<void> {
  await client.create(SERVICES, {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: ns.name },
    spec: { selector: { app }, ports: [{ port: 80 }] },
  } as never);
}

async function get(name: string): Promise<Rollout> {
  return client.get<Rollout>(ROLLOUT, ns.name, name);
}

/** Waits, while the controller runs, until `until` holds. */
async function reconcileUntil(
  name: string,
  until: (ro: Rollout, rss: ReplicaSet[]) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<Rollout> {
  try {
    return await eventually(
      what,
      async () => {
        const ro = await get(name);
        return until(ro, await replicaSets(name)) ? ro : undefined;
      },
      timeoutMs,
    );
  } catch (err) {
    const ro = await get(name);
    const rss = (await replicaSets(name)).map(
      (rs) =>
        `${rs.metadata.labels?.[POD_TEMPLATE_HASH]}: ${rs.spec.replicas}/${rs.status?.availableReplicas ?? 0}`,
    );
    throw new Error(
      `${(err as Error).message}\nstatus: ${JSON.stringify(ro.status)}\nreplica sets: ${rss.join(', ')}`,
      { cause: err },
    );
  }
}

/** Events the controller recorded about a Rollout, by reason. */
async function eventReasons(name: string): Promise<string[]> {
  const list = await client.request<{ items: { reason?: string; regarding?: { name?: string } }[] }>(
    'GET',
    `/apis/events.k8s.io/v1/namespaces/${ns.name}/events`,
  );
  return list.items.filter((e) => e.regarding?.name === name).map((e) => e.reason ?? '');
}

async function replicaSets(rollout: string): Promise<ReplicaSet[]> {
  const list = await client.request<{ items: ReplicaSet[] }>(
    'GET',
    `/apis/apps/v1/namespaces/${ns.name}/replicasets`,
  );
  return list.items.filter((rs) => rs.metadata.ownerReferences?.some((o) => o.name === rollout));
}

function countsOf(rss: ReplicaSet[]): Record<string, number> {
  return Object.fromEntries(
    rss.map((rs) => [rs.metadata.labels![POD_TEMPLATE_HASH]!, rs.spec.replicas ?? 0]),
  );
}

const available = (ro: Rollout, rss: ReplicaSet[], hash: string, n: number) =>
  rss.some(
    (rs) =>
      rs.metadata.labels?.[POD_TEMPLATE_HASH] === hash &&
      (rs.status?.availableReplicas ?? 0) === n &&
      rs.spec.replicas === n,
  );

async function selectorOf(name: string): Promise<string | undefined> {
  const svc = await client.get<{ metadata?: object; spec?: { selector?: Record<string, string> } }>(
    SERVICES,
    ns.name,
    name,
  );
  return svc.spec?.selector?.[POD_TEMPLATE_HASH];
}

async function setImage(name: string, image: string): Promise<string> {
  const ro = await get(name);
  const t = template(ro.spec.template!.metadata!.labels!.app!, image);
  await client.patch(ROLLOUT, ns.name, name, { spec: { template: t } });
  return podTemplateHash(t);
}

async function patchStatus(name: string, status: Record<string, unknown>): Promise<void> {
  await client.request(
    'PATCH',
    `/apis/kube-actions.dev/v1alpha1/namespaces/${ns.name}/rollouts/${name}/status`,
    {
      body: { status },
      contentType: 'application/merge-patch+json',
    },
  );
}

describe('canary without a traffic router', () => {
  test('setWeight by replica counts, an indefinite pause until promoted, a timed pause, then the canary becomes stable', async () => {
    await service('web-stable', 'web');
    await service('web-canary', 'web');
    const v1 = await createRollout('web', {
      replicas: 4,
      strategy: {
        canary: {
          stableService: 'web-stable',
          canaryService: 'web-canary',
          steps: [{ setWeight: 25 }, { pause: {} }, { setWeight: 50 }, { pause: { duration: 1 } }],
        },
      },
    });
    const h1 = podTemplateHash(v1);
    // The first revision skips the steps.
    let ro = await reconcileUntil(
      'web',
      (r, rss) => r.status?.phase === 'Healthy' && available(r, rss, h1, 4),
      'v1 Healthy',
    );
    expect(ro.status).toMatchObject({ stableRS: h1, currentPodHash: h1, currentStepIndex: 4 });
    expect(await selectorOf('web-stable')).toBe(h1);

    const h2 = await setImage('web', 'registry.example/web:2');
    ro = await reconcileUntil('web', (r) => r.status?.phase === 'Paused', 'paused at the indefinite pause');
    expect(ro.status).toMatchObject({ currentPodHash: h2, stableRS: h1, currentStepIndex: 1 });
    expect(ro.status?.pauseConditions?.map((p) => p.reason)).toEqual(['CanaryPauseStep']);
    expect(countsOf(await replicaSets('web'))).toEqual({ [h1]: 3, [h2]: 1 });
    expect(ro.status?.canary?.weights?.canary.weight).toBe(25);
    expect(await selectorOf('web-stable')).toBe(h1);
    expect(await selectorOf('web-canary')).toBe(h2);

    // Still paused after a restart: the new controller resumes from status.
    await manager.stop();
    await startController();
    await new Promise((r) => setTimeout(r, 500));
    expect((await get('web')).status).toMatchObject({ currentStepIndex: 1, phase: 'Paused' });

    // Promote, as `kube-actions rollout promote` does: the pause condition goes.
    await patchStatus('web', { pauseConditions: null });
    await reconcileUntil(
      'web',
      (r, rss) => r.status?.phase === 'Healthy' && r.status.stableRS === h2 && available(r, rss, h2, 4),
      'v2 promoted to stable',
    );
    const counts = countsOf(await replicaSets('web'));
    expect(counts).toEqual({ [h1]: 0, [h2]: 4 });
    expect(await selectorOf('web-stable')).toBe(h2);
    expect(await selectorOf('web-canary')).toBe(h2);
  });

  test('abort sends everything back to stable and marks the rollout Degraded; retry starts the steps again', async () => {
    await service('undo-stable', 'undo');
    await service('undo-canary', 'undo');
    const v1 = await createRollout('undo', {
      replicas: 4,
      strategy: {
        canary: {
          stableService: 'undo-stable',
          canaryService: 'undo-canary',
          steps: [{ setWeight: 25 }, { pause: {} }],
        },
      },
    });
    const h2 = podTemplateHash(v1);
    await reconcileUntil(
      'undo',
      (r, rss) => r.status?.phase === 'Healthy' && available(r, rss, h2, 4),
      'v1 Healthy',
    );
    const h3 = await setImage('undo', 'registry.example/undo:2');
    await reconcileUntil(
      'undo',
      (r) => r.status?.phase === 'Paused' && r.status.currentPodHash === h3,
      'paused on v2',
    );
    await patchStatus('undo', { abort: true });
    const ro = await reconcileUntil(
      'undo',
      (r, rss) => r.status?.phase === 'Degraded' && countsOf(rss)[h3] === 0 && available(r, rss, h2, 4),
      'aborted',
    );
    expect(ro.status?.stableRS).toBe(h2);
    // Both Services on the stable pods, as Argo Rollouts does on abort (rollout-conformance.test.ts).
    expect(await selectorOf('undo-canary')).toBe(h2);
    expect(await selectorOf('undo-stable')).toBe(h2);
    expect(ro.status?.currentStepIndex).toBe(0);
    // Retry: clear the abort; the canary steps run again from the start.
    await patchStatus('undo', { abort: null, abortedAt: null, currentStepIndex: 0 });
    const again = await reconcileUntil(
      'undo',
      (r) => r.status?.phase === 'Paused' && r.status.currentStepIndex === 1,
      'paused again after retry',
    );
    expect(again.status?.abort).toBeUndefined();
    expect(countsOf(await replicaSets('undo'))[h3]).toBe(1);
  });
});

describe('blue/green', () => {
  test('preview first, manual promotion switches the active Service, the old ReplicaSet goes after scaleDownDelaySeconds', async () => {
    await service('shop-active', 'shop');
    await service('shop-preview', 'shop');
    const v1 = await createRollout('shop', {
      replicas: 2,
      strategy: {
        blueGreen: {
          activeService: 'shop-active',
          previewService: 'shop-preview',
          autoPromotionEnabled: false,
          scaleDownDelaySeconds: 2,
        },
      },
    });
    const h1 = podTemplateHash(v1);
    await reconcileUntil(
      'shop',
      (r, rss) => r.status?.phase === 'Healthy' && available(r, rss, h1, 2),
      'v1 Healthy',
    );
    expect(await selectorOf('shop-active')).toBe(h1);

    const h2 = await setImage('shop', 'registry.example/shop:2');
    const ro = await reconcileUntil(
      'shop',
      (r, rss) => r.status?.phase === 'Paused' && available(r, rss, h2, 2),
      'v2 previewed and paused',
    );
    expect(ro.status?.pauseConditions?.map((p) => p.reason)).toEqual(['BlueGreenPause']);
    expect(await selectorOf('shop-active')).toBe(h1);
    expect(await selectorOf('shop-preview')).toBe(h2);

    await patchStatus('shop', { pauseConditions: null });
    await reconcileUntil('shop', (r) => r.status?.stableRS === h2, 'v2 promoted');
    expect(await selectorOf('shop-active')).toBe(h2);
    // The old revision keeps its pods until the scale-down deadline.
    const old = (await replicaSets('shop')).find((rs) => rs.metadata.labels?.[POD_TEMPLATE_HASH] === h1)!;
    expect(old.spec.replicas).toBe(2);
    expect(old.metadata.annotations?.[SCALE_DOWN_DEADLINE]).toBeDefined();
    const deadline = Date.parse(old.metadata.annotations![SCALE_DOWN_DEADLINE]!);
    await reconcileUntil('shop', (_r, rss) => countsOf(rss)[h1] === 0, 'the old revision scaled down');
    expect(Date.now()).toBeGreaterThanOrEqual(deadline);
    await reconcileUntil('shop', (r) => r.status?.phase === 'Healthy', 'Healthy on v2');
  });
});

describe('canary with nginx', () => {
  test('a canary Ingress with the canary-weight annotation, copying only the stable rules', async () => {
    await service('api-stable', 'api');
    await service('api-canary', 'api');
    await service('other', 'other');
    await client.create(INGRESSES, {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'Ingress',
      metadata: { name: 'api', namespace: ns.name },
      spec: {
        ingressClassName: 'nginx',
        rules: [
          {
            host: 'api.example.com',
            http: {
              paths: [
                {
                  path: '/',
                  pathType: 'Prefix',
                  backend: { service: { name: 'api-stable', port: { number: 80 } } },
                },
              ],
            },
          },
          {
            host: 'other.example.com',
            http: {
              paths: [
                {
                  path: '/',
                  pathType: 'Prefix',
                  backend: { service: { name: 'other', port: { number: 80 } } },
                },
              ],
            },
          },
        ],
      },
    } as never);
    const v1 = await createRollout('api', {
      replicas: 5,
      strategy: {
        canary: {
          stableService: 'api-stable',
          canaryService: 'api-canary',
          trafficRouting: { nginx: { stableIngress: 'api' } },
          steps: [{ setWeight: 20 }, { pause: {} }],
        },
      },
    });
    await reconcileUntil(
      'api',
      (r, rss) => r.status?.phase === 'Healthy' && available(r, rss, podTemplateHash(v1), 5),
      'v1 Healthy',
    );
    const h2 = await setImage('api', 'registry.example/api:2');
    const ro = await reconcileUntil('api', (r) => r.status?.phase === 'Paused', 'paused at 20%');
    // With a router the stable keeps all its pods; the canary gets ceil(20% of 5) = 1.
    expect(countsOf(await replicaSets('api'))).toEqual({ [podTemplateHash(v1)]: 5, [h2]: 1 });
    expect(ro.status?.canary?.weights?.canary.weight).toBe(20);
    const canary = await client.get<{
      metadata: { annotations: Record<string, string> };
      spec: {
        ingressClassName: string;
        rules: { host: string; http: { paths: { backend: { service: { name: string } } }[] } }[];
      };
    }>(INGRESSES, ns.name, canaryIngressName('api', 'api'));
    expect(canary.metadata.annotations).toMatchObject({
      'nginx.ingress.kubernetes.io/canary': 'true',
      'nginx.ingress.kubernetes.io/canary-weight': '20',
    });
    expect(canary.spec.ingressClassName).toBe('nginx');
    expect(canary.spec.rules.map((r) => [r.host, r.http.paths[0]!.backend.service.name])).toEqual([
      ['api.example.com', 'api-canary'],
    ]);

    // Abort: traffic back to stable at once.
    await patchStatus('api', { abort: true });
    await reconcileUntil('api', (r) => r.status?.phase === 'Degraded', 'aborted');
    const after = await client.get<{ metadata: { annotations: Record<string, string> } }>(
      INGRESSES,
      ns.name,
      canaryIngressName('api', 'api'),
    );
    expect(after.metadata.annotations['nginx.ingress.kubernetes.io/canary-weight']).toBe('0');
  });
});

describe('invalid specs', () => {
  test('a selector that does not match the template, and unsupported steps, give an InvalidSpec condition', async () => {
    await client.create(ROLLOUT, {
      apiVersion: ROLLOUT.apiVersion,
      kind: 'Rollout',
      metadata: { name: 'bad', namespace: ns.name },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'nope' } },
        template: template('bad', 'registry.example/bad:1'),
        strategy: { canary: { steps: [{ setWeight: 150 }, { experiment: {} }] } },
      },
    } as never);
    const ro = await reconcileUntil('bad', (r) => r.status?.phase === 'Degraded', 'Degraded');
    const cond = ro.status?.conditions?.find((c) => c.type === 'InvalidSpec');
    expect(cond?.status).toBe('True');
    expect(cond?.message).toContain('spec.selector.matchLabels app=nope does not match');
    expect(cond?.message).toContain('steps[0].setWeight must be an integer from 0 to 100');
    expect(cond?.message).toContain('steps[1].experiment is not supported');
    expect(await replicaSets('bad')).toEqual([]);
  });
});

describe('canary with analysis', () => {
  let metrics: Server;
  let healthy = true;
  beforeAll(async () => {
    metrics = createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ ok: healthy }));
    });
    await new Promise<void>((r) => metrics.listen(0, '127.0.0.1', r));
  });
  afterAll(() => new Promise<void>((r) => metrics.close(() => r())));

  test('a passing analysis step lets the canary through; a failing one aborts within one interval, back to 100% stable', async () => {
    const url = `http://127.0.0.1:${(metrics.address() as { port: number }).port}/health`;
    await client.create({ apiVersion: 'kube-actions.dev/v1alpha1', resource: 'analysistemplates' }, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'AnalysisTemplate',
      metadata: { name: 'health', namespace: ns.name },
      spec: {
        args: [{ name: 'hash' }],
        metrics: [
          {
            name: 'ok',
            interval: '1s',
            count: 3,
            successCondition: 'result == true',
            provider: { web: { url: `${url}?hash={{args.hash}}`, jsonPath: '{$.ok}' } },
          },
        ],
      },
    } as never);
    const v1 = await createRollout('pay', {
      replicas: 2,
      strategy: {
        canary: {
          steps: [
            { setWeight: 50 },
            {
              analysis: {
                templates: [{ templateName: 'health' }],
                args: [{ name: 'hash', valueFrom: { podTemplateHashValue: 'Latest' } }],
              },
            },
          ],
        },
      },
    });
    const h1 = podTemplateHash(v1);
    await reconcileUntil(
      'pay',
      (r, rss) => r.status?.phase === 'Healthy' && available(r, rss, h1, 2),
      'v1 Healthy',
    );

    const h2 = await setImage('pay', 'registry.example/pay:2');
    let ro = await reconcileUntil(
      'pay',
      (r) => r.status?.stableRS === h2 && r.status.phase === 'Healthy',
      'v2 through a passing analysis',
    );
    expect(ro.status?.canary?.currentStepAnalysisRunStatus).toMatchObject({ status: 'Successful' });

    healthy = false;
    const h3 = await setImage('pay', 'registry.example/pay:3');
    ro = await reconcileUntil(
      'pay',
      (r, rss) => r.status?.phase === 'Degraded' && countsOf(rss)[h3] === 0 && available(r, rss, h2, 2),
      'aborted by the failing analysis',
    );
    // Aborted on the first failed measurement, not after the run's three.
    const run = await client.get<{ status?: { metricResults?: { measurements?: unknown[] }[] } }>(
      { apiVersion: 'kube-actions.dev/v1alpha1', resource: 'analysisruns', namespaced: true },
      ns.name,
      ro.status!.canary!.currentStepAnalysisRunStatus!.name,
    );
    expect(run.status?.metricResults?.[0]?.measurements).toHaveLength(1);
    expect(ro.status?.abort).toBe(true);
    expect(ro.status?.message).toMatch(/RolloutAborted: analysis run .* failed/);
    expect(ro.status?.stableRS).toBe(h2);
  });
});

describe('Argo Rollouts manifests and restarts', () => {
  test("Argo Rollouts' basic canary example (rollouts-demo, apiVersion changed) runs to completion", async () => {
    // From argoproj/argo-rollouts examples/rollout-canary.yaml, with the pauses shortened.
    const manifest = `apiVersion: kube-actions.dev/v1alpha1
kind: Rollout
metadata:
  name: rollouts-demo
spec:
  replicas: 5
  strategy:
    canary:
      steps:
      - setWeight: 20
      - pause: {}
      - setWeight: 40
      - pause: {duration: 1}
      - setWeight: 60
      - pause: {duration: 1}
      - setWeight: 80
      - pause: {duration: 1}
  revisionHistoryLimit: 2
  selector:
    matchLabels:
      app: rollouts-demo
  template:
    metadata:
      labels:
        app: rollouts-demo
    spec:
      containers:
      - name: rollouts-demo
        image: argoproj/rollouts-demo:blue
        ports:
        - name: http
          containerPort: 8080
          protocol: TCP
        resources:
          requests:
            memory: 32Mi
            cpu: 5m
`;
    const body = parse(manifest) as Rollout;
    body.metadata.namespace = ns.name;
    await client.create(ROLLOUT, body as never);
    await reconcileUntil('rollouts-demo', (r) => r.status?.phase === 'Healthy', 'blue Healthy');
    await client.patch(
      ROLLOUT,
      ns.name,
      'rollouts-demo',
      [
        {
          op: 'replace',
          path: '/spec/template/spec/containers/0/image',
          value: 'argoproj/rollouts-demo:yellow',
        },
      ],
      'application/json-patch+json',
    );
    const paused = await reconcileUntil(
      'rollouts-demo',
      (r) => r.status?.phase === 'Paused',
      'paused at 20%',
    );
    expect(Object.values(countsOf(await replicaSets('rollouts-demo'))).sort()).toEqual([1, 4]);
    expect(paused.status?.currentStepIndex).toBe(1);
    await patchStatus('rollouts-demo', { pauseConditions: null });
    const done = await reconcileUntil(
      'rollouts-demo',
      (r, rss) =>
        r.status?.phase === 'Healthy' &&
        available(r, rss, r.status.currentPodHash!, 5) &&
        r.status.stableRS === r.status.currentPodHash,
      'yellow promoted',
    );
    expect(done.status?.currentStepIndex).toBe(8);
  });

  test('blue/green with pre-promotion analysis and autoPromotionSeconds, across a controller restart', async () => {
    await service('bg-active', 'bg');
    await service('bg-preview', 'bg');
    await client.create({ apiVersion: 'kube-actions.dev/v1alpha1', resource: 'analysistemplates' }, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'AnalysisTemplate',
      metadata: { name: 'smoke', namespace: ns.name },
      spec: {
        metrics: [
          {
            name: 'job',
            provider: {
              job: {
                spec: {
                  backoffLimit: 0,
                  template: {
                    spec: {
                      restartPolicy: 'Never',
                      containers: [{ name: 'smoke', image: 'registry.example/smoke:1' }],
                    },
                  },
                },
              },
            },
          },
        ],
      },
    } as never);
    await createRollout('bg', {
      replicas: 2,
      strategy: {
        blueGreen: {
          activeService: 'bg-active',
          previewService: 'bg-preview',
          previewReplicaCount: 1,
          autoPromotionSeconds: 2,
          scaleDownDelaySeconds: 1,
          prePromotionAnalysis: { templates: [{ templateName: 'smoke' }] },
        },
      },
    });
    await reconcileUntil('bg', (r) => r.status?.phase === 'Healthy', 'v1 Healthy');
    const h2 = await setImage('bg', 'registry.example/bg:2');
    // The preview runs small; the analysis Job (completed by kwok) passes; then the timed pause.
    const paused = await reconcileUntil(
      'bg',
      (r) => r.status?.pauseConditions?.[0]?.reason === 'BlueGreenPause',
      'the auto-promotion pause',
    );
    expect(paused.status?.blueGreen?.prePromotionAnalysisRunStatus?.status).toBe('Successful');
    expect(countsOf(await replicaSets('bg'))[h2]).toBe(1);
    expect(await selectorOf('bg-active')).not.toBe(h2);
    // A new controller process (a restart) picks up where the old one stopped.
    await manager.stop();
    await startController();
    const promoted = await reconcileUntil('bg', (r) => r.status?.stableRS === h2, 'auto-promoted after 2 s');
    expect(Date.now() - Date.parse(paused.status!.pauseConditions![0]!.startTime)).toBeGreaterThanOrEqual(
      2000,
    );
    expect(promoted.status?.blueGreen?.activeSelector).toBe(h2);
    expect(await selectorOf('bg-active')).toBe(h2);
    expect(countsOf(await replicaSets('bg'))[h2]).toBe(2);
    // Exactly one analysis run: the restart did not start another.
    const runs = await client.request<{ items: { metadata: { name: string } }[] }>(
      'GET',
      `/apis/kube-actions.dev/v1alpha1/namespaces/${ns.name}/analysisruns`,
    );
    expect(runs.items.filter((r) => r.metadata.name.startsWith(`bg-${h2}`))).toHaveLength(1);
  });

  test('a strategy naming Services that do not exist is InvalidSpec, not a crash loop', async () => {
    await client.create(ROLLOUT, {
      apiVersion: ROLLOUT.apiVersion,
      kind: 'Rollout',
      metadata: { name: 'ghost', namespace: ns.name },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'ghost' } },
        template: template('ghost', 'registry.example/ghost:1'),
        strategy: { blueGreen: { activeService: 'ghost-active' } },
      },
    } as never);
    const ro = await reconcileUntil('ghost', (r) => r.status?.phase === 'Degraded', 'Degraded');
    expect(ro.status?.conditions?.find((c) => c.type === 'InvalidSpec')?.message).toBe(
      `service "ghost-active" does not exist in namespace ${ns.name}`,
    );
  });
});

describe('scale subresource', () => {
  test('an HPA-style scale through /scale resizes the stable ReplicaSet; status carries the selector HPAs need', async () => {
    const v1 = await createRollout('hpa', {
      replicas: 1,
      strategy: { canary: { steps: [{ setWeight: 50 }] } },
    });
    await reconcileUntil('hpa', (r) => r.status?.phase === 'Healthy', 'Healthy at 1');
    const scalePath = `/apis/kube-actions.dev/v1alpha1/namespaces/${ns.name}/rollouts/hpa/scale`;
    await client.request('PATCH', scalePath, {
      body: { spec: { replicas: 3 } },
      contentType: 'application/merge-patch+json',
    });
    await reconcileUntil(
      'hpa',
      (r, rss) => r.status?.phase === 'Healthy' && available(r, rss, podTemplateHash(v1), 3),
      'Healthy at 3',
    );
    const scale = await client.request<{
      spec: { replicas: number };
      status: { replicas: number; selector: string };
    }>('GET', scalePath);
    expect(scale).toMatchObject({ spec: { replicas: 3 }, status: { replicas: 3, selector: 'app=hpa' } });
  });
});

describe('maxSurge and maxUnavailable', () => {
  test('without a router pods move like a rolling update: never more than replicas + maxSurge, never fewer than replicas - maxUnavailable available', async () => {
    await createRollout('roll', {
      replicas: 4,
      strategy: { canary: { maxSurge: 1, maxUnavailable: 0, steps: [{ setWeight: 100 }] } },
    });
    await reconcileUntil('roll', (r) => r.status?.phase === 'Healthy', 'v1 Healthy');
    // Every state the ReplicaSets pass through, as the controller's own cache sees them.
    // The controller's own informer (rolloutInformers gives the same selection, so the same cache).
    const cache = rolloutInformers(manager, ns.name).replicaSets as Informer<ReplicaSet>;
    let maxPods = 0;
    let minAvailable = Infinity;
    const seen = new Set<string>();
    const record = () => {
      const rss = cache
        .list(ns.name)
        .filter((rs) => rs.metadata.ownerReferences?.some((o) => o.name === 'roll'));
      maxPods = Math.max(
        maxPods,
        rss.reduce((n, rs) => n + (rs.spec.replicas ?? 0), 0),
      );
      minAvailable = Math.min(
        minAvailable,
        rss.reduce((n, rs) => n + (rs.status?.availableReplicas ?? 0), 0),
      );
      seen.add(JSON.stringify(countsOf(rss)));
    };
    const unsubscribe = cache.addHandlers({ onAdd: record, onUpdate: record });
    const h2 = await setImage('roll', 'registry.example/roll:2');
    try {
      await reconcileUntil(
        'roll',
        (r) => r.status?.stableRS === h2 && r.status.phase === 'Healthy',
        'v2 rolled out',
      );
    } finally {
      unsubscribe();
    }
    expect(maxPods).toBeLessThanOrEqual(5);
    expect(minAvailable).toBeGreaterThanOrEqual(4);
    // It went in steps, not all at once.
    expect(seen.size).toBeGreaterThan(3);
  });
});

describe('workloadRef', () => {
  test('a Rollout taking its template from a Deployment scales the Deployment down progressively, and follows its template', async () => {
    const deployments = { apiVersion: 'apps/v1', resource: 'deployments' };
    await client.create(deployments, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'legacy', namespace: ns.name },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'legacy' } },
        template: template('legacy', 'registry.example/legacy:1'),
      },
    } as never);
    await client.create(ROLLOUT, {
      apiVersion: ROLLOUT.apiVersion,
      kind: 'Rollout',
      metadata: { name: 'legacy', namespace: ns.name },
      spec: {
        replicas: 2,
        workloadRef: {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          name: 'legacy',
          scaleDown: 'progressively',
        },
        strategy: { canary: { steps: [{ setWeight: 50 }, { pause: {} }] } },
      },
    } as never);
    const deploymentReplicas = async () =>
      (await client.get<{ metadata?: object; spec: { replicas: number } }>(deployments, ns.name, 'legacy'))
        .spec.replicas;
    const ro = await reconcileUntil(
      'legacy',
      (r) => r.status?.phase === 'Healthy',
      'Healthy from the Deployment template',
    );
    expect(ro.status?.stableRS).toBe(
      podTemplateHash(
        (await client.get<{ metadata?: object; spec: { template: never } }>(deployments, ns.name, 'legacy'))
          .spec.template,
      ),
    );
    expect(await deploymentReplicas()).toBe(0);
    // A new image in the Deployment is a new revision of the Rollout.
    await client.patch(deployments, ns.name, 'legacy', {
      spec: { template: template('legacy', 'registry.example/legacy:2') },
    });
    const paused = await reconcileUntil(
      'legacy',
      (r) => r.status?.phase === 'Paused',
      'canary of the Deployment change',
    );
    expect(paused.status?.currentPodHash).not.toBe(paused.status?.stableRS);
    expect(await deploymentReplicas()).toBe(0);
  });
});

describe('blue/green post-promotion analysis', () => {
  let server: Server;
  beforeAll(async () => {
    server = createServer((_req, res) =>
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"errors": 7}'),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  test('a failing post-promotion analysis switches the active Service back to the stable revision and aborts', async () => {
    await service('post-active', 'post');
    await client.create({ apiVersion: 'kube-actions.dev/v1alpha1', resource: 'analysistemplates' }, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'AnalysisTemplate',
      metadata: { name: 'errors', namespace: ns.name },
      spec: {
        metrics: [
          {
            name: 'errors',
            successCondition: 'result < 1',
            provider: {
              web: {
                url: `http://127.0.0.1:${(server.address() as { port: number }).port}/`,
                jsonPath: '{$.errors}',
              },
            },
          },
        ],
      },
    } as never);
    const v1 = await createRollout('post', {
      replicas: 2,
      strategy: {
        blueGreen: {
          activeService: 'post-active',
          abortScaleDownDelaySeconds: 0,
          postPromotionAnalysis: { templates: [{ templateName: 'errors' }] },
        },
      },
    });
    const h1 = podTemplateHash(v1);
    await reconcileUntil('post', (r) => r.status?.phase === 'Healthy', 'v1 Healthy');
    const h2 = await setImage('post', 'registry.example/post:2');
    const ro = await reconcileUntil(
      'post',
      (r) => r.status?.phase === 'Degraded',
      'aborted by the post-promotion analysis',
    );
    // It did switch (post-promotion analysis runs against the new active revision)...
    // Events are sent in the background: they follow the status shortly.
    const reasons = await eventually('the switch and abort events', async () => {
      const got = await eventReasons('post');
      return got.includes('RolloutAborted') ? got : undefined;
    });
    expect(reasons).toEqual(expect.arrayContaining(['SwitchActiveService', 'RolloutAborted']));
    // ...and switched back.
    expect(ro.status?.blueGreen?.activeSelector).toBe(h1);
    expect(await selectorOf('post-active')).toBe(h1);
    expect(ro.status?.stableRS).toBe(h1);
    expect(ro.status?.blueGreen?.postPromotionAnalysisRunStatus?.status).toBe('Failed');
    // abortScaleDownDelaySeconds: 0 keeps the aborted revision's pods for inspection.
    expect(countsOf(await replicaSets('post'))[h2]).toBe(2);
  });
});

describe('references that appear after the Rollout', () => {
  test('Services, a template, the Secret it reads and a workloadRef Deployment created later each clear InvalidSpec by themselves', async () => {
    // As a `kubectl apply -f` of one file can order them: the Rollout first.
    await client.create(ROLLOUT, {
      apiVersion: ROLLOUT.apiVersion,
      kind: 'Rollout',
      metadata: { name: 'late', namespace: ns.name },
      spec: {
        replicas: 1,
        workloadRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'late' },
        strategy: {
          canary: {
            stableService: 'late-stable',
            canaryService: 'late-canary',
            analysis: { templates: [{ templateName: 'late-check' }], startingStep: 1 },
            steps: [{ setWeight: 50 }],
          },
        },
      },
    } as never);
    const invalid = async (pattern: RegExp) =>
      (
        await reconcileUntil(
          'late',
          (r) => pattern.test(r.status?.conditions?.find((c) => c.type === 'InvalidSpec')?.message ?? ''),
          `InvalidSpec matching ${pattern}`,
        )
      ).status!;
    await invalid(/deployment "late" \(spec.workloadRef\) does not exist/);
    await client.create({ apiVersion: 'apps/v1', resource: 'deployments' }, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'late', namespace: ns.name },
      spec: {
        replicas: 0,
        selector: { matchLabels: { app: 'late' } },
        template: template('late', 'registry.example/late:1'),
      },
    } as never);
    const status = await invalid(/service "late-stable" does not exist/);
    expect(status.conditions?.find((c) => c.type === 'InvalidSpec')?.message).toContain(
      `analysistemplate "late-check" does not exist in namespace ${ns.name}`,
    );
    await service('late-stable', 'late');
    await service('late-canary', 'late');
    await invalid(/^analysistemplate "late-check" does not exist/);
    await client.create({ apiVersion: 'kube-actions.dev/v1alpha1', resource: 'analysistemplates' }, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'AnalysisTemplate',
      metadata: { name: 'late-check', namespace: ns.name },
      spec: {
        args: [{ name: 'token', valueFrom: { secretKeyRef: { name: 'late-token', key: 'token' } } }],
        metrics: [{ name: 'm', provider: { web: { url: 'http://127.0.0.1:1/' } } }],
      },
    } as never);
    await invalid(/^secret "late-token" \(arg token of late-check\) does not exist/);
    await client.create({ apiVersion: 'v1', resource: 'secrets' }, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'late-token', namespace: ns.name },
      stringData: { token: 'x' },
    } as never);
    // Nothing touched the Rollout: the watches on what it names woke it.
    const ro = await reconcileUntil('late', (r) => r.status?.phase === 'Healthy', 'Healthy once all exist');
    expect(ro.metadata.generation).toBe(1);
    expect(ro.status?.conditions?.some((c) => c.type === 'InvalidSpec')).toBe(false);
  });
});

describe('a cache behind our own writes', () => {
  test('the next reconcile acts on what we last wrote, not on the copy before it (no scale-down deadline moved)', async () => {
    await service('stale-active', 'stale');
    await service('stale-preview', 'stale');
    await createRollout('stale', {
      replicas: 2,
      strategy: {
        blueGreen: {
          activeService: 'stale-active',
          previewService: 'stale-preview',
          autoPromotionEnabled: false,
          scaleDownDelaySeconds: 600,
        },
      },
    });
    await reconcileUntil('stale', (r) => r.status?.phase === 'Healthy', 'v1 Healthy');
    const h1 = (await get('stale')).status!.stableRS!;
    const h2 = await setImage('stale', 'registry.example/stale:2');
    await reconcileUntil(
      'stale',
      (r, rss) => r.status?.phase === 'Paused' && available(r, rss, h2, 2),
      'v2 paused',
    );
    // From here only this test's reconciler acts, on caches whose watches it can stop.
    await manager.stop();
    const own = new Manager({ kubeConfig: ns.kc, logger: silentLogger });
    const informers = rolloutInformers(own, ns.name);
    const all: Informer<KubeObject>[] = Object.values(informers) as Informer<KubeObject>[];
    for (const informer of all) informer.start();
    const reconciler = new RolloutReconciler({
      client,
      cache: informerCache(informers),
      logger: silentLogger,
    });
    try {
      await Promise.all(all.map((i) => i.waitForSync()));
      await patchStatus('stale', { pauseConditions: null });
      await eventually('the promote in the cache', () =>
        Promise.resolve(informers.rollouts.get(ns.name, 'stale')?.status?.pauseConditions ? undefined : true),
      );
      // The watches fall behind: nothing they would deliver from now on arrives.
      await informers.rollouts.stop();
      await informers.replicaSets.stop();
      await reconciler.reconcile({ namespace: ns.name, name: 'stale' });
      const promoted = await get('stale');
      expect(promoted.status?.stableRS).toBe(h2);
      const old = (await replicaSets('stale')).find((rs) => rs.metadata.labels?.[POD_TEMPLATE_HASH] === h1)!;
      const deadline = old.metadata.annotations?.[SCALE_DOWN_DEADLINE];
      expect(deadline).toBeDefined();
      await new Promise((r) => setTimeout(r, 50));
      // Read from the stale copy, this would promote again and push the deadline 600 s on.
      await reconciler.reconcile({ namespace: ns.name, name: 'stale' });
      const after = (await replicaSets('stale')).find(
        (rs) => rs.metadata.labels?.[POD_TEMPLATE_HASH] === h1,
      )!;
      expect(after.metadata.annotations?.[SCALE_DOWN_DEADLINE]).toBe(deadline);
      expect(after.metadata.resourceVersion).toBe(old.metadata.resourceVersion);
      expect((await get('stale')).metadata.resourceVersion).toBe(promoted.metadata.resourceVersion);
      expect(await selectorOf('stale-active')).toBe(h2);
    } finally {
      await own.stop();
      await startController();
    }
  });
});

describe('deadlines, history and background analysis on the cluster', () => {
  test('progressDeadlineAbort: a revision whose pods no node takes is aborted back to stable after the deadline', async () => {
    const v1 = await createRollout('deadline', {
      replicas: 2,
      progressDeadlineSeconds: 2,
      progressDeadlineAbort: true,
      strategy: { canary: { steps: [{ setWeight: 50 }, { pause: {} }] } },
    });
    const h1 = podTemplateHash(v1);
    await reconcileUntil(
      'deadline',
      (r, rss) => r.status?.phase === 'Healthy' && available(r, rss, h1, 2),
      'v1 Healthy',
    );
    const unschedulable = {
      ...template('deadline', 'registry.example/deadline:2'),
      spec: {
        nodeSelector: { 'kube-actions.dev/no-such-node': 'true' },
        containers: [{ name: 'main', image: 'registry.example/deadline:2' }],
      },
    };
    await client.patch(ROLLOUT, ns.name, 'deadline', { spec: { template: unschedulable } });
    const h2 = podTemplateHash(unschedulable);
    // No event announces a deadline: the controller's own requeue finds it.
    const ro = await reconcileUntil(
      'deadline',
      (r, rss) => r.status?.abort === true && countsOf(rss)[h2] === 0,
      'aborted by the progress deadline',
    );
    expect(ro.status?.message).toBe('RolloutAborted: progress deadline of 2s exceeded');
    expect(ro.status?.conditions?.find((c) => c.type === 'Progressing')?.reason).toBe(
      'ProgressDeadlineExceeded',
    );
    expect(countsOf(await replicaSets('deadline'))[h1]).toBe(2);
  });

  test('revisionHistoryLimit: old ReplicaSets past the limit are deleted', async () => {
    await createRollout('history', { replicas: 1, revisionHistoryLimit: 1, strategy: { canary: {} } });
    await reconcileUntil('history', (r) => r.status?.phase === 'Healthy', 'v1 Healthy');
    for (const n of [2, 3, 4]) {
      const h = await setImage('history', `registry.example/history:${n}`);
      await reconcileUntil(
        'history',
        (r, rss) => r.status?.stableRS === h && available(r, rss, h, 1),
        `v${n}`,
      );
    }
    await reconcileUntil('history', (_r, rss) => rss.length === 2, 'two ReplicaSets left (current + 1)');
  });

  test('background analysis is terminated when the canary is promoted', async () => {
    await client.create({ apiVersion: 'kube-actions.dev/v1alpha1', resource: 'analysistemplates' }, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'AnalysisTemplate',
      metadata: { name: 'forever', namespace: ns.name },
      spec: {
        metrics: [
          {
            name: 'job',
            interval: '1h',
            provider: {
              job: {
                spec: {
                  template: {
                    spec: {
                      restartPolicy: 'Never',
                      containers: [{ name: 'c', image: 'registry.example/check:1' }],
                    },
                  },
                },
              },
            },
          },
        ],
      },
    } as never);
    await createRollout('bgrun', {
      replicas: 2,
      strategy: {
        canary: {
          analysis: { templates: [{ templateName: 'forever' }] },
          steps: [{ setWeight: 50 }, { pause: {} }],
        },
      },
    });
    await reconcileUntil('bgrun', (r) => r.status?.phase === 'Healthy', 'v1 Healthy');
    const h2 = await setImage('bgrun', 'registry.example/bgrun:2');
    const paused = await reconcileUntil(
      'bgrun',
      (r) =>
        r.status?.phase === 'Paused' && r.status.canary?.currentBackgroundAnalysisRunStatus !== undefined,
      'paused with background analysis',
    );
    const run = paused.status!.canary!.currentBackgroundAnalysisRunStatus!.name;
    await patchStatus('bgrun', { pauseConditions: null });
    await reconcileUntil('bgrun', (r) => r.status?.stableRS === h2, 'promoted');
    const ended = await eventually('the background run ended', async () => {
      const r = await client.get<{ spec: { terminate?: boolean }; status?: { phase?: string } }>(
        { apiVersion: 'kube-actions.dev/v1alpha1', resource: 'analysisruns', namespaced: true },
        ns.name,
        run,
      );
      return r.spec.terminate && r.status?.phase === 'Successful' ? r : undefined;
    });
    expect(ended.spec.terminate).toBe(true);
  });
});
