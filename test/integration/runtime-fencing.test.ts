// A replica that loses its Lease writes nothing afterwards: the reconciles it has in flight see
// their signal abort, and any write they still try is refused by the manager's client, for every
// controller the manager runs (the Rollout, Application and analysis controllers share it).
import { afterEach, expect, test } from '@jest/globals';
import { KubeClient, WritesFencedError } from '../../src/core/kube/client.ts';
import type { KubeObject, ResourceRef } from '../../src/core/kube/objects.ts';
import { silentLogger } from '../../src/controller/runtime/log.ts';
import { Manager } from '../../src/controller/runtime/manager.ts';
import type { Lease } from '../../src/controller/runtime/leader-election.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const ns = useTestNamespace('rt-fence');
const CONFIGMAPS: ResourceRef = { apiVersion: 'v1', resource: 'configmaps', namespaced: true };
const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** A manager campaigning for `lease` with short timings (3 s lease, 2 s renew deadline), stopped after the test. */
function leaderManager(lease: string, identity: string): Manager {
  const manager = new Manager({
    kubeConfig: ns.kc,
    logger: silentLogger,
    leaderElection: {
      namespace: ns.name,
      name: lease,
      identity,
      leaseDurationSeconds: 3,
      renewDeadlineSeconds: 2,
      retryPeriodSeconds: 0.5,
    },
  });
  cleanup.push(() => manager.stop());
  return manager;
}

test('a reconcile in flight when the Lease is lost is aborted, and its write after that never lands', async () => {
  const client = new KubeClient(ns.kc);
  cleanup.push(() => client.close());
  const manager = leaderManager('fence', 'replica-a');
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let entered!: () => void;
  const inFlight = new Promise<void>((resolve) => (entered = resolve));
  let seen: AbortSignal | undefined;
  let writeError: unknown;
  const configMaps = manager.informer<KubeObject>(CONFIGMAPS, { namespace: ns.name });
  manager
    .controller({
      name: 'slow-writer',
      reconciler: {
        reconcile: async (req, ctx) => {
          if (req.name !== 'trigger') return;
          seen = ctx.signal;
          entered();
          // Holds on past the moment the lease is lost, as a slow sync or a hung request would.
          await gate;
          try {
            await manager.client.create(CONFIGMAPS, {
              apiVersion: 'v1',
              kind: 'ConfigMap',
              metadata: { name: 'written-after-loss', namespace: ns.name },
            });
          } catch (err) {
            writeError = err;
            throw err;
          }
        },
      },
    })
    .watch(configMaps);
  await manager.start();
  await eventually('leading', () => Promise.resolve(manager.isLeader() || undefined));
  await client.create(CONFIGMAPS, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'trigger', namespace: ns.name },
  });
  await inFlight;

  // Another replica holds the Lease now (as after a partition longer than the lease).
  const path = `/apis/coordination.k8s.io/v1/namespaces/${ns.name}/leases/fence`;
  const lease = await client.request<Lease>('GET', path);
  await client.request('PUT', path, {
    body: {
      ...lease,
      spec: {
        ...lease.spec,
        holderIdentity: 'replica-b',
        leaseDurationSeconds: 3600,
        renewTime: new Date().toISOString().replace('Z', '000Z'),
      },
    },
  });
  await eventually('replica-a noticed', () => Promise.resolve(manager.isLeader() ? undefined : true), 10_000);
  expect(seen?.aborted).toBe(true);
  release();
  expect(await manager.done).toBe('leadership-lost');
  expect(writeError).toBeInstanceOf(WritesFencedError);
  await expect(client.get(CONFIGMAPS, ns.name, 'written-after-loss')).rejects.toMatchObject({ code: 404 });
});

test('a leader frozen past its renew deadline (a stopped process, a long pause) refuses to write when it resumes, before its elector notices', async () => {
  const manager = leaderManager('freeze', 'frozen');
  let outcome: unknown;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const configMaps = manager.informer<KubeObject>(CONFIGMAPS, { namespace: ns.name });
  manager
    .controller({
      name: 'freezer',
      reconciler: {
        reconcile: async (req) => {
          if (req.name !== 'freeze-trigger') return;
          // The event loop blocked for longer than the lease: no timer, no renewal, nothing runs.
          const until = performance.now() + 3_500;
          while (performance.now() < until) {
            /* frozen */
          }
          try {
            outcome = await manager.client.create(CONFIGMAPS, {
              apiVersion: 'v1',
              kind: 'ConfigMap',
              metadata: { name: 'written-after-freeze', namespace: ns.name },
            });
          } catch (err) {
            outcome = err;
          }
          done();
        },
      },
    })
    .watch(configMaps);
  await manager.start();
  await eventually('leading', () => Promise.resolve(manager.isLeader() || undefined));
  const client = new KubeClient(ns.kc);
  cleanup.push(() => client.close());
  await client.create(CONFIGMAPS, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'freeze-trigger', namespace: ns.name },
  });
  await finished;
  expect(outcome).toBeInstanceOf(WritesFencedError);
  await expect(client.get(CONFIGMAPS, ns.name, 'written-after-freeze')).rejects.toMatchObject({ code: 404 });
});

test('a write that passed the guard and froze before it was sent is stopped at the socket when it resumes past the deadline', async () => {
  const manager = leaderManager('late-freeze', 'late-frozen');
  await manager.start();
  await eventually('leading', () => Promise.resolve(manager.isLeader() || undefined));
  // A write to a pooled connection first, so the frozen one is not waiting for a handshake.
  await manager.client.create(CONFIGMAPS, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'written-while-leading', namespace: ns.name },
  });
  // The guard is asked when create() is called, synchronously; the request goes out only after
  // later ticks. The freeze falls between the two, as a SIGSTOP can.
  const write = manager.client
    .create(CONFIGMAPS, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'written-after-late-freeze', namespace: ns.name },
    })
    .then(
      (created) => created,
      (err: unknown) => err,
    );
  const until = performance.now() + 3_500;
  while (performance.now() < until) {
    /* frozen */
  }
  expect(await write).toBeInstanceOf(WritesFencedError);
  const client = new KubeClient(ns.kc);
  cleanup.push(() => client.close());
  await expect(client.get(CONFIGMAPS, ns.name, 'written-after-late-freeze')).rejects.toMatchObject({
    code: 404,
  });
  await client.get(CONFIGMAPS, ns.name, 'written-while-leading');
});
