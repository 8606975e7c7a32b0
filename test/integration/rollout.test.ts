// The Rollout reconciler on the real control plane: ReplicaSets become available through
// kube-controller-manager and kwok, Services and Ingresses are real objects.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { KubeClient, isNotFound } from '../../src/core/kube/client.ts';
import { silentLogger } from '../../src/controller/runtime/log.ts';
import { canaryIngressName } from '../../src/controller/rollout/nginx.ts';
import { podTemplateHash } from '../../src/controller/rollout/replicas.ts';
import { RolloutReconciler } from '../../src/controller/rollout/reconciler.ts';
import { ClusterAnalysisDriver } from '../../src/controller/rollout/analysis.ts';
import { AnalysisRunReconciler } from '../../src/controller/analysis/reconciler.ts';
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
let reconciler: RolloutReconciler;
let analysis: AnalysisRunReconciler;

beforeAll(async () => {
  await installCRDs(ns.kc);
  client = new KubeClient(ns.kc);
  reconciler = new RolloutReconciler({
    client,
    getRollout: async (req) =>
      client.get<Rollout>(ROLLOUT, req.namespace, req.name).catch((err: unknown) => {
        if (isNotFound(err)) return undefined;
        throw err;
      }),
    listReplicaSets: async (namespace) =>
      (
        await client.request<{ items: ReplicaSet[] }>(
          'GET',
          `/apis/apps/v1/namespaces/${namespace}/replicasets`,
        )
      ).items,
    analysis: new ClusterAnalysisDriver(client),
    logger: silentLogger,
  });
  analysis = new AnalysisRunReconciler({ client, logger: silentLogger });
});
afterAll(async () => {
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

/** Reconciles as the controller would until `until` holds. */
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
        await reconciler.reconcile({ namespace: ns.name, name });
        // The analysis controller's turn, for the runs this rollout started.
        const runs = await client.request<{ items: { metadata: { name: string } }[] }>(
          'GET',
          `/apis/kube-actions.dev/v1alpha1/namespaces/${ns.name}/analysisruns`,
        );
        for (const run of runs.items)
          await analysis.reconcile({ namespace: ns.name, name: run.metadata.name });
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

    // Still paused however often it is reconciled (a restart resumes from status).
    for (let i = 0; i < 3; i++) await reconciler.reconcile({ namespace: ns.name, name: 'web' });
    expect((await get('web')).status?.currentStepIndex).toBe(1);

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
    const h2 = (await get('web')).status!.stableRS!;
    const h3 = await setImage('web', 'registry.example/web:3');
    await reconcileUntil(
      'web',
      (r) => r.status?.phase === 'Paused' && r.status.currentPodHash === h3,
      'paused on v3',
    );
    await patchStatus('web', { abort: true });
    const ro = await reconcileUntil(
      'web',
      (r, rss) => r.status?.phase === 'Degraded' && countsOf(rss)[h3] === 0 && available(r, rss, h2, 4),
      'aborted',
    );
    expect(ro.status?.stableRS).toBe(h2);
    expect(await selectorOf('web-canary')).toBe(h3);
    expect(await selectorOf('web-stable')).toBe(h2);
    // Retry: clear the abort; the canary steps run again from the start.
    await patchStatus('web', { abort: null, abortedAt: null, currentStepIndex: 0 });
    const again = await reconcileUntil(
      'web',
      (r) => r.status?.phase === 'Paused' && r.status.currentStepIndex === 1,
      'paused again after retry',
    );
    expect(again.status?.abort).toBeUndefined();
    expect(countsOf(await replicaSets('web'))[h3]).toBe(1);
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
    const started = Date.now();
    const h3 = await setImage('pay', 'registry.example/pay:3');
    ro = await reconcileUntil(
      'pay',
      (r, rss) => r.status?.phase === 'Degraded' && countsOf(rss)[h3] === 0 && available(r, rss, h2, 2),
      'aborted by the failing analysis',
    );
    expect(Date.now() - started).toBeLessThan(5000);
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
    // A new controller instance (a restart) picks up where the old one stopped.
    reconciler = new RolloutReconciler({
      client,
      getRollout: (req) => client.get<Rollout>(ROLLOUT, req.namespace, req.name),
      listReplicaSets: async (namespace) =>
        (
          await client.request<{ items: ReplicaSet[] }>(
            'GET',
            `/apis/apps/v1/namespaces/${namespace}/replicasets`,
          )
        ).items,
      analysis: new ClusterAnalysisDriver(client),
      logger: silentLogger,
    });
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
    const h2 = await setImage('roll', 'registry.example/roll:2');
    let maxPods = 0;
    let minAvailable = Infinity;
    const seen = new Set<string>();
    await reconcileUntil(
      'roll',
      (r, rss) => {
        const desired = rss.reduce((n, rs) => n + (rs.spec.replicas ?? 0), 0);
        const availableNow = rss.reduce((n, rs) => n + (rs.status?.availableReplicas ?? 0), 0);
        maxPods = Math.max(maxPods, desired);
        minAvailable = Math.min(minAvailable, availableNow);
        seen.add(JSON.stringify(countsOf(rss)));
        return r.status?.stableRS === h2 && r.status.phase === 'Healthy';
      },
      'v2 rolled out',
    );
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
    let switched = false;
    const ro = await reconcileUntil(
      'post',
      (r) => {
        // It did switch (post-promotion analysis runs against the new active revision)...
        if (r.status?.blueGreen?.activeSelector === h2) switched = true;
        return r.status?.phase === 'Degraded';
      },
      'aborted by the post-promotion analysis',
    );
    expect(switched).toBe(true);
    // ...and switched back.
    expect(ro.status?.blueGreen?.activeSelector).toBe(h1);
    expect(await selectorOf('post-active')).toBe(h1);
    expect(ro.status?.stableRS).toBe(h1);
    expect(ro.status?.blueGreen?.postPromotionAnalysisRunStatus?.status).toBe('Failed');
    // abortScaleDownDelaySeconds: 0 keeps the aborted revision's pods for inspection.
    expect(countsOf(await replicaSets('post'))[h2]).toBe(2);
  });
});
