// The Application controller's comparison (compare.ts) against the real apiserver, with a watch
// that lags behind it: a real informer stopped after its first list, whose copy of an object is
// older than the stored one, as a running watch's copy is for a moment after every write (our own
// apply included). The comparison must not call such an object OutOfSync: with self-heal on, that
// started a second sync of the revision just synced.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { ResourceManager } from '../../src/core/kube/apply.ts';
import { KubeClient } from '../../src/core/kube/client.ts';
import { RESTMapper } from '../../src/core/kube/discovery.ts';
import type { KubeResource } from '../../src/core/kube/resource.ts';
import { Informer } from '../../src/controller/runtime/informer.ts';
import { Comparer } from '../../src/controller/sync/compare.ts';
import { useTestNamespace } from '../cluster/testing.ts';

const ns = useTestNamespace('appcompare');
const CM = { apiVersion: 'v1', resource: 'configmaps' };
let client: KubeClient;
let resources: ResourceManager;

beforeAll(() => {
  client = new KubeClient(ns.kc);
  resources = new ResourceManager(client, new RESTMapper(client));
});
afterAll(async () => {
  await client?.close();
});

const configMap = (name: string, v: string): KubeResource => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: ns.name },
  data: { v },
});

/** A watched copy of `name` that the watch no longer updates. */
async function staleCopy(name: string): Promise<KubeResource> {
  const informer = new Informer<KubeResource>(client, { resource: CM, namespace: ns.name });
  informer.start();
  await informer.waitForSync();
  await informer.stop();
  return informer.get(ns.name, name)!;
}

describe('comparison with a watch that lags behind', () => {
  test('an object whose stored version is desired is in sync, although the watched copy is older', async () => {
    await resources.apply((await resources.resolve([configMap('lagging', '0')], ns.name))[0]!);
    const stale = await staleCopy('lagging');
    // The write the watch has not shown yet.
    const [desired] = await resources.resolve([configMap('lagging', '1')], ns.name);
    const stored = await resources.apply(desired!);
    expect(stale.metadata.resourceVersion).not.toBe(stored.metadata.resourceVersion);

    const comparer = new Comparer(resources);
    const [c] = await comparer.compare([{ resolved: desired!, live: stale }], () => false);
    expect(c!.inSync).toBe(true);
    // What the comparison reports (health, the plan's live objects) is the stored object too.
    expect(c!.live?.metadata.resourceVersion).toBe(stored.metadata.resourceVersion);
  });

  test('real drift still shows through a lagging watch', async () => {
    await resources.apply((await resources.resolve([configMap('drifted', '0')], ns.name))[0]!);
    const stale = await staleCopy('drifted');
    await client.patch(CM, ns.name, 'drifted', { data: { v: 'edited' } });
    const [desired] = await resources.resolve([configMap('drifted', '0')], ns.name);
    const [c] = await new Comparer(resources).compare([{ resolved: desired!, live: stale }], () => false);
    expect(c!.inSync).toBe(false);
    expect((c!.live as { data?: Record<string, string> }).data).toEqual({ v: 'edited' });
  });
});
