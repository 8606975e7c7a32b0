// The GitOps controller over real pods: drift in an object it manages is healed (and real
// containers start to match), an object removed from git is pruned, and deleting the Application
// with the resources finalizer removes what it deployed, down to the containers.
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { PatchType } from '../../src/core/kube/client.ts';
import { ROLLOUT, SERVICES } from '../../src/controller/rollout/types.ts';
import { APPLICATION } from '../../src/controller/sync/types.ts';
import { describeOnRealNode, eventually, useTestNamespace, type RealNodeInfo } from '../cluster/testing.ts';
import { appRollout, appService, startAppEnvironment, type AppEnvironment } from './app-env.ts';

function manifests(node: RealNodeInfo, image: string): Record<string, string> {
  return {
    'web/rollout.yaml': appRollout(node, image, 2, { canary: { steps: [] } }),
    'web/service.yaml': appService('web'),
    'web/extra.yaml': appService('web-extra'),
  };
}

describeOnRealNode('GitOps over real pods: self-heal, prune, the resources finalizer', (node) => {
  const ns = useTestNamespace('e2e-gitops');
  let env: AppEnvironment;
  let core: k8s.CoreV1Api;

  /** The app's pods whose containers are running and ready on the real node. */
  const runningPods = async () =>
    (await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app=web' })).items.filter(
      (p) =>
        p.spec?.nodeName === node.name &&
        p.status?.containerStatuses?.every((c) => c.ready) &&
        !p.metadata?.deletionTimestamp,
    ).length;

  beforeAll(async () => {
    env = await startAppEnvironment(node, ns, ['v1'], (image) => manifests(node, image));
    core = ns.kc.makeApiClient(k8s.CoreV1Api);
    await env.untilRollout((ro) => ro.status?.phase === 'Healthy', 'v1 healthy', 180_000);
    await eventually(
      '2 running containers',
      async () => ((await runningPods()) === 2 ? true : undefined),
      120_000,
    );
  }, 600_000);
  afterAll(() => env?.stop());

  test('scaled by hand, the Rollout is healed back to git, and real containers follow', async () => {
    await env.client.patch(ROLLOUT, ns.name, 'web', { spec: { replicas: 1 } }, PatchType.merge);
    await env.untilRollout(
      (ro) => ro.spec.replicas === 2 && ro.status?.availableReplicas === 2,
      'healed to 2 replicas',
    );
    await eventually(
      '2 running containers again',
      async () => ((await runningPods()) === 2 ? true : undefined),
      120_000,
    );
  });

  test('an object removed from git is pruned', async () => {
    await env.client.get(SERVICES, ns.name, 'web-extra');
    await env.commit({ 'web/extra.yaml': null }, 'drop web-extra');
    await eventually(
      'web-extra pruned',
      () =>
        env.client.get(SERVICES, ns.name, 'web-extra').then(
          () => undefined,
          () => true,
        ),
      120_000,
    );
    // What stays in git stays in the cluster.
    await env.client.get(SERVICES, ns.name, 'web');
  });

  test('deleting the Application with the resources finalizer removes its objects and their containers', async () => {
    await env.client.patch(
      APPLICATION,
      ns.name,
      'web',
      { metadata: { finalizers: ['resources-finalizer.argocd.argoproj.io'] } },
      PatchType.merge,
    );
    await env.client.delete(APPLICATION, ns.name, 'web');
    await eventually(
      'the Application gone',
      () =>
        env.client.get(APPLICATION, ns.name, 'web').then(
          () => undefined,
          () => true,
        ),
      120_000,
    );
    const gone = (ref: Parameters<typeof env.client.get>[0], name: string) =>
      env.client.get(ref, ns.name, name).then(
        () => false,
        () => true,
      );
    expect(await gone(ROLLOUT, 'web')).toBe(true);
    expect(await gone(SERVICES, 'web')).toBe(true);
    await eventually(
      'no app pods left',
      async () =>
        (await core.listNamespacedPod({ namespace: ns.name, labelSelector: 'app=web' })).items.length === 0
          ? true
          : undefined,
      120_000,
    );
  });
});
