// Proof that the test control plane is a real Kubernetes: the controllers run (Deployments make
// pods, kwok makes them ready, owners garbage-collect dependents) and the apiserver enforces
// server-side apply ownership and optimistic concurrency.
import { describe, expect, test } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const ns = useTestNamespace('controlplane');

function statusCode(err: unknown): number | undefined {
  return err instanceof k8s.ApiException ? err.code : undefined;
}

describe('the test control plane', () => {
  test('reports a real Kubernetes version and has Ready kwok nodes', async () => {
    const version = await ns.kc.makeApiClient(k8s.VersionApi).getCode();
    expect(version.gitVersion).toMatch(/^v1\.35\.\d+$/);
    const nodes = await ns.kc.makeApiClient(k8s.CoreV1Api).listNode();
    const ready = nodes.items.filter((n) =>
      n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
    );
    expect(ready.length).toBeGreaterThanOrEqual(3);
  });

  test('a Deployment with 3 replicas reaches 3 ready pods', async () => {
    const apps = ns.kc.makeApiClient(k8s.AppsV1Api);
    const labels = { app: 'web' };
    await apps.createNamespacedDeployment({
      namespace: ns.name,
      body: {
        metadata: { name: 'web' },
        spec: {
          replicas: 3,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: { containers: [{ name: 'web', image: 'registry.example/web:1.0' }] },
          },
        },
      },
    });
    // Deployment controller -> ReplicaSet -> pods -> scheduler binds -> kwok marks Ready.
    const deployment = await eventually('3 ready replicas', async () => {
      const d = await apps.readNamespacedDeployment({ name: 'web', namespace: ns.name });
      return d.status?.readyReplicas === 3 ? d : undefined;
    });
    expect(deployment.status?.availableReplicas).toBe(3);

    const pods = await ns.kc
      .makeApiClient(k8s.CoreV1Api)
      .listNamespacedPod({ namespace: ns.name, labelSelector: 'app=web' });
    expect(pods.items).toHaveLength(3);
    for (const pod of pods.items) {
      expect(pod.spec?.nodeName).toMatch(/^kwok-node-/);
      expect(pod.status?.phase).toBe('Running');
    }
  });

  test('server-side applies from two field managers conflict with 409 until forced', async () => {
    const objects = k8s.KubernetesObjectApi.makeApiClient(ns.kc);
    const configMap = (value: string) => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'shared', namespace: ns.name },
      data: { owner: value },
    });
    const apply = (manager: string, value: string, force = false) =>
      objects.patch(
        configMap(value),
        undefined,
        undefined,
        manager,
        force,
        k8s.PatchStrategy.ServerSideApply,
      );

    await apply('manager-a', 'a');
    const conflict = await apply('manager-b', 'b').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(statusCode(conflict)).toBe(409);
    expect(String((conflict as k8s.ApiException<string>).body)).toContain('conflict');

    const forced = (await apply('manager-b', 'b', true)) as k8s.V1ConfigMap;
    expect(forced.data?.owner).toBe('b');
    const managers = forced.metadata?.managedFields?.map((f) => f.manager);
    expect(managers).toContain('manager-b');
  });

  test('an update with a stale resourceVersion is rejected with 409', async () => {
    const core = ns.kc.makeApiClient(k8s.CoreV1Api);
    const created = await core.createNamespacedConfigMap({
      namespace: ns.name,
      body: { metadata: { name: 'versioned' }, data: { n: '1' } },
    });
    const first = { ...created, data: { n: '2' } };
    await core.replaceNamespacedConfigMap({ name: 'versioned', namespace: ns.name, body: first });

    // `created` still carries the old resourceVersion.
    const stale = { ...created, data: { n: '3' } };
    const err = await core
      .replaceNamespacedConfigMap({ name: 'versioned', namespace: ns.name, body: stale })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(statusCode(err)).toBe(409);
    const live = await core.readNamespacedConfigMap({ name: 'versioned', namespace: ns.name });
    expect(live.data?.n).toBe('2');
  });

  test('deleting an owner garbage-collects its dependents', async () => {
    const core = ns.kc.makeApiClient(k8s.CoreV1Api);
    const owner = await core.createNamespacedConfigMap({
      namespace: ns.name,
      body: { metadata: { name: 'owner' } },
    });
    await core.createNamespacedSecret({
      namespace: ns.name,
      body: {
        metadata: {
          name: 'dependent',
          ownerReferences: [
            { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata!.uid! },
          ],
        },
        stringData: { k: 'v' },
      },
    });
    await core.deleteNamespacedConfigMap({ name: 'owner', namespace: ns.name });
    // The garbage collector in kube-controller-manager removes the orphaned dependent.
    await eventually('the dependent Secret to be garbage-collected', async () => {
      const gone = await core.readNamespacedSecret({ name: 'dependent', namespace: ns.name }).then(
        () => false,
        (e: unknown) => statusCode(e) === 404,
      );
      return gone ? true : undefined;
    });
  });
});
