// A Manager running a controller against the real apiserver: ConfigMaps labelled app=copy are
// copied into Secrets they own; the Secrets are watched and mapped back to their owner, so a
// deleted or edited copy is repaired. Also: probes and metrics over HTTP, and two managers with
// leader election where only the leader reconciles.
import { afterEach, describe, expect, test } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { enqueueOwner, type Reconciler, type Request } from '../../src/controller/runtime/controller.ts';
import { isNotFound } from '../../src/core/kube/client.ts';
import { Logger } from '../../src/controller/runtime/log.ts';
import { Manager } from '../../src/controller/runtime/manager.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

/** eventually() for a synchronous check. */
function poll<T>(what: string, check: () => T | undefined, timeoutMs?: number): Promise<T> {
  return eventually(what, () => Promise.resolve(check()), timeoutMs);
}

const ns = useTestNamespace('rt-controller');
const configMaps = { apiVersion: 'v1', resource: 'configmaps' };
const secrets = { apiVersion: 'v1', resource: 'secrets' };
const quiet = new Logger({ sink: () => undefined });

const managers: Manager[] = [];
afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.stop()));
});

/** Copies each ConfigMap's data into a Secret "<name>-copy" owned by it. */
class CopyReconciler implements Reconciler {
  readonly manager: Manager;
  readonly inFlight = new Set<string>();
  readonly reconciled: string[] = [];
  overlaps = 0;

  constructor(manager: Manager) {
    this.manager = manager;
  }

  async reconcile(request: Request): Promise<void> {
    const key = `${request.namespace}/${request.name}`;
    if (this.inFlight.has(key)) this.overlaps++;
    this.inFlight.add(key);
    try {
      this.reconciled.push(request.name);
      const cm = this.manager
        .informer<k8s.V1ConfigMap>(configMaps, { namespace: ns.name, labelSelector: 'app=copy' })
        .get(request.namespace, request.name);
      // Gone: the garbage collector deletes the owned Secret.
      if (!cm) return;
      const client = this.manager.client;
      const desired: k8s.V1Secret = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name: `${request.name}-copy`,
          namespace: request.namespace,
          labels: { 'copy-of': request.name },
          ownerReferences: [
            {
              apiVersion: 'v1',
              kind: 'ConfigMap',
              name: request.name,
              uid: cm.metadata!.uid!,
              controller: true,
            },
          ],
        },
        stringData: cm.data ?? {},
      };
      try {
        const current = await client.get<k8s.V1Secret>(secrets, request.namespace, `${request.name}-copy`);
        const data = Object.fromEntries(
          Object.entries(current.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]),
        );
        if (JSON.stringify(data) === JSON.stringify(cm.data ?? {})) return;
        // Optimistic concurrency: the PUT carries the resourceVersion that was read.
        await client.update(secrets, {
          ...desired,
          data: undefined,
          metadata: { ...desired.metadata, resourceVersion: current.metadata?.resourceVersion },
        });
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await client.create(secrets, desired);
      }
    } finally {
      this.inFlight.delete(key);
    }
  }
}

async function httpGet(manager: Manager, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${manager.address()!.port}${path}`);
  return { status: res.status, body: await res.text() };
}

function newManager(options: Partial<ConstructorParameters<typeof Manager>[0]> = {}): Manager {
  const manager = new Manager({
    kubeConfig: ns.kc,
    logger: quiet,
    server: { port: 0, host: '127.0.0.1' },
    ...options,
  });
  managers.push(manager);
  return manager;
}

function copyController(manager: Manager, name = 'copy'): CopyReconciler {
  const reconciler = new CopyReconciler(manager);
  manager
    .controller({ name, reconciler, maxConcurrentReconciles: 3 })
    .watch(manager.informer(configMaps, { namespace: ns.name, labelSelector: 'app=copy' }))
    .watch(
      manager.informer(secrets, { namespace: ns.name, labelSelector: 'copy-of' }),
      enqueueOwner({ apiVersion: 'v1', kind: 'ConfigMap' }),
    );
  return reconciler;
}

async function secretData(name: string): Promise<Record<string, string> | undefined> {
  try {
    const s = await ns.kc.makeApiClient(k8s.CoreV1Api).readNamespacedSecret({ name, namespace: ns.name });
    return Object.fromEntries(
      Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]),
    );
  } catch (err) {
    if (err instanceof k8s.ApiException && err.code === 404) return undefined;
    throw err;
  }
}

describe('Manager + Controller', () => {
  test('copies ConfigMaps into owned Secrets and repairs deleted or edited copies via owner mapping', async () => {
    const core = ns.kc.makeApiClient(k8s.CoreV1Api);
    const manager = newManager();
    const reconciler = copyController(manager);
    // The same informer is shared, not created twice.
    expect(manager.informer(configMaps, { namespace: ns.name, labelSelector: 'app=copy' })).toBe(
      manager.informer(configMaps, { namespace: ns.name, labelSelector: 'app=copy' }),
    );
    await manager.start();

    await core.createNamespacedConfigMap({
      namespace: ns.name,
      body: { metadata: { name: 'alpha', labels: { app: 'copy' } }, data: { color: 'blue' } },
    });
    await eventually('the copy', async () =>
      (await secretData('alpha-copy'))?.color === 'blue' ? true : undefined,
    );

    await core.patchNamespacedConfigMap(
      { name: 'alpha', namespace: ns.name, body: { data: { color: 'green' } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    await eventually('the updated copy', async () =>
      (await secretData('alpha-copy'))?.color === 'green' ? true : undefined,
    );

    // Deleting the dependent wakes its owner through enqueueOwner, which recreates it.
    await core.deleteNamespacedSecret({ name: 'alpha-copy', namespace: ns.name });
    await eventually('the recreated copy', async () =>
      (await secretData('alpha-copy'))?.color === 'green' ? true : undefined,
    );

    // So does editing it.
    await core.patchNamespacedSecret(
      { name: 'alpha-copy', namespace: ns.name, body: { stringData: { color: 'red' } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    await eventually('the repaired copy', async () =>
      (await secretData('alpha-copy'))?.color === 'green' ? true : undefined,
    );
    expect(reconciler.overlaps).toBe(0);

    expect(await httpGet(manager, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await httpGet(manager, '/readyz')).toEqual({ status: 200, body: 'ok\n' });
    const metrics = await httpGet(manager, '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(
      /^controller_runtime_reconcile_total\{controller="copy",result="success"\} [1-9]\d*$/m,
    );
    expect(metrics.body).toMatch(/^rest_client_requests_total\{verb="create",code="201"\} [2-9]$/m);
    expect(metrics.body).toMatch(/^rest_client_requests_total\{verb="update",code="200"\} [1-9]\d*$/m);
    expect(metrics.body).toMatch(/^workqueue_depth\{name="copy"\} \d+$/m);
    expect(metrics.body).toMatch(
      /^controller_runtime_reconcile_time_seconds_count\{controller="copy"\} [1-9]\d*$/m,
    );
    expect(metrics.body).toMatch(/^informer_objects\{informer="configmaps\/rt-controller-[0-9a-f]+"\} 1$/m);
    expect((await httpGet(manager, '/nope')).status).toBe(404);

    await manager.stop();
    expect(await manager.done).toBe('stopped');
  });

  test('readyz reports informers that have not synced; informerDefaults apply to every informer', async () => {
    // A fast backoff: with the default (800 ms doubling) three failures would take over 2 s.
    const manager = newManager({ informerDefaults: { backoff: { initialMs: 20, maxMs: 40 } } });
    const missing = manager.informer(
      { apiVersion: 'example.invalid/v1', resource: 'nothings' },
      { namespace: ns.name },
    );
    await manager.start();
    const ready = await httpGet(manager, '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toContain('unsynced nothings/');
    expect((await httpGet(manager, '/healthz')).status).toBe(200);
    await poll('three failed lists', () => (missing.stats.errors >= 3 ? true : undefined), 1500);
    expect(missing.hasSynced()).toBe(false);
  });

  test('with leader election only the leader reconciles; the standby takes over after a graceful stop', async () => {
    const core = ns.kc.makeApiClient(k8s.CoreV1Api);
    const election = {
      namespace: ns.name,
      name: 'copy-controller',
      leaseDurationSeconds: 3,
      renewDeadlineSeconds: 2,
      retryPeriodSeconds: 0.5,
    };
    const a = newManager({ leaderElection: { ...election, identity: 'a' } });
    const b = newManager({ leaderElection: { ...election, identity: 'b' } });
    const ra = copyController(a, 'copy-a');
    const rb = copyController(b, 'copy-b');
    await a.start();
    await b.start();
    const leader = await poll('a leader', () => [a, b].find((m) => m.isLeader()));
    expect([a.identity, b.identity]).toEqual(['a', 'b']);
    const [standby, leaderReconciler, standbyReconciler] = leader === a ? [b, ra, rb] : [a, rb, ra];

    await core.createNamespacedConfigMap({
      namespace: ns.name,
      body: { metadata: { name: 'beta', labels: { app: 'copy' } }, data: { n: '1' } },
    });
    await eventually('the copy by the leader', async () =>
      (await secretData('beta-copy'))?.n === '1' ? true : undefined,
    );
    expect(leaderReconciler.reconciled).toContain('beta');
    expect(standbyReconciler.reconciled).toEqual([]);
    // The standby's informers run (warm cache), and it is ready.
    expect((await httpGet(standby, '/readyz')).status).toBe(200);

    await leader.stop();
    await poll('the standby to lead', () => (standby.isLeader() ? true : undefined), 5000);
    await core.patchNamespacedConfigMap(
      { name: 'beta', namespace: ns.name, body: { data: { n: '2' } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    await eventually('the copy by the new leader', async () =>
      (await secretData('beta-copy'))?.n === '2' ? true : undefined,
    );
    expect(standbyReconciler.reconciled).toContain('beta');
  });

  test('a manager that loses its lease stops its controllers and reports leadership-lost', async () => {
    const manager = newManager({
      leaderElection: {
        namespace: ns.name,
        name: 'lost-lease',
        identity: 'victim',
        leaseDurationSeconds: 3,
        renewDeadlineSeconds: 2,
        retryPeriodSeconds: 0.5,
      },
    });
    copyController(manager, 'copy-lost');
    await manager.start();
    await poll('leadership', () => (manager.isLeader() ? true : undefined));
    const path = `/apis/coordination.k8s.io/v1/namespaces/${ns.name}/leases/lost-lease`;
    const intruder = new Manager({ kubeConfig: ns.kc, logger: quiet }).client;
    let stop = false;
    const steal = (async () => {
      while (!stop) {
        const lease = await intruder.request<{ spec?: object }>('GET', path);
        lease.spec = { ...lease.spec, holderIdentity: 'intruder' };
        await intruder.request('PUT', path, { body: lease }).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    try {
      expect(await manager.done).toBe('leadership-lost');
      expect(manager.isLeader()).toBe(false);
      expect((await httpGet(manager, '/healthz').catch(() => ({ status: 0 }))).status).not.toBe(200);
    } finally {
      stop = true;
      await steal;
      await intruder.close();
    }
  }, 30_000);
});
