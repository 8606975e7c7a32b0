// The informer against the real apiserver: list + watch, pagination, selectors, resync, late
// handlers, cluster-scoped resources, stop. Watch restarts, 410 Gone and the watchdog are in
// runtime-watch-faults.test.ts (they need their own control plane).
import { afterEach, describe, expect, test } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { KubeClient } from '../../src/core/kube/client.ts';
import { Informer, type InformerOptions } from '../../src/controller/runtime/informer.ts';
import { Registry } from '../../src/core/metrics.ts';
import type { KubeObject } from '../../src/core/kube/objects.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

/** eventually() for a synchronous check. */
function poll<T>(what: string, check: () => T | undefined, timeoutMs?: number): Promise<T> {
  return eventually(what, () => Promise.resolve(check()), timeoutMs);
}

const ns = useTestNamespace('rt-informer');
const configMaps = { apiVersion: 'v1', resource: 'configmaps' };

type Event =
  | { type: 'add'; key: string; rv: string; initialList: boolean }
  | { type: 'update'; key: string; rv: string; resync: boolean; data?: Record<string, string> }
  | { type: 'delete'; key: string; finalStateUnknown: boolean };

const started: Array<Informer<k8s.V1ConfigMap | KubeObject>> = [];
const clients: KubeClient[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((i) => i.stop()));
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

function startInformer<T extends KubeObject = k8s.V1ConfigMap>(
  options: Partial<InformerOptions> = {},
  metrics?: Registry,
): { informer: Informer<T>; events: Event[] } {
  const client = new KubeClient(ns.kc, { metrics });
  clients.push(client);
  const informer = new Informer<T>(client, { resource: configMaps, namespace: ns.name, metrics, ...options });
  const events: Event[] = [];
  informer.addHandlers({
    onAdd: (o, info) =>
      events.push({
        type: 'add',
        key: key(o),
        rv: o.metadata!.resourceVersion!,
        initialList: info.initialList,
      }),
    onUpdate: (_old, o, info) =>
      events.push({
        type: 'update',
        key: key(o),
        rv: o.metadata!.resourceVersion!,
        resync: info.resync,
        data: (o as k8s.V1ConfigMap).data,
      }),
    onDelete: (o, info) =>
      events.push({ type: 'delete', key: key(o), finalStateUnknown: info.finalStateUnknown }),
  });
  informer.start();
  started.push(informer);
  return { informer, events };
}

function key(o: KubeObject): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
}

const core = () => ns.kc.makeApiClient(k8s.CoreV1Api);

async function createConfigMap(
  name: string,
  data: Record<string, string> = {},
  labels?: Record<string, string>,
) {
  return core().createNamespacedConfigMap({ namespace: ns.name, body: { metadata: { name, labels }, data } });
}

describe('Informer', () => {
  test('lists existing objects, then sees adds, updates and deletes through the watch', async () => {
    await createConfigMap('pre-existing', { a: '1' });
    const { informer, events } = startInformer();
    await informer.waitForSync();
    expect(informer.hasSynced()).toBe(true);
    expect(informer.get(ns.name, 'pre-existing')?.data).toEqual({ a: '1' });
    // Objects from a list get kind/apiVersion like watch events do.
    expect(informer.get(ns.name, 'pre-existing')).toMatchObject({ kind: 'ConfigMap', apiVersion: 'v1' });
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'add', key: `${ns.name}/pre-existing`, initialList: true }),
    );

    await createConfigMap('watched', { v: '1' });
    await poll('the add', () => informer.get(ns.name, 'watched'));
    await core().patchNamespacedConfigMap(
      { name: 'watched', namespace: ns.name, body: { data: { v: '2' } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    await poll('the update', () => (informer.get(ns.name, 'watched')?.data?.v === '2' ? true : undefined));
    await core().deleteNamespacedConfigMap({ name: 'watched', namespace: ns.name });
    await poll('the delete', () => (informer.get(ns.name, 'watched') ? undefined : true));

    const watched = events.filter((e) => e.key === `${ns.name}/watched`);
    expect(watched.map((e) => e.type)).toEqual(['add', 'update', 'delete']);
    expect(watched[0]).toMatchObject({ initialList: false });
    expect(watched[1]).toMatchObject({ resync: false, data: { v: '2' } });
    expect(watched[2]).toMatchObject({ finalStateUnknown: false });
    expect(informer.list(ns.name).map((o) => o.metadata?.name)).toContain('pre-existing');
    expect(informer.list('elsewhere')).toEqual([]);
    expect(informer.stats).toMatchObject({ lists: 1, relists: 0 });
    await core().deleteNamespacedConfigMap({ name: 'pre-existing', namespace: ns.name });
  });

  test('dropManagedFields: listed, watched and written objects are cached without managedFields; the writer keeps its own', async () => {
    const listed = await createConfigMap('trim-listed', { a: '1' });
    expect(listed.metadata?.managedFields?.length).toBeGreaterThan(0);
    const { informer } = startInformer({ dropManagedFields: true });
    const plain = startInformer().informer;
    await informer.waitForSync();
    await plain.waitForSync();
    expect(informer.get(ns.name, 'trim-listed')?.data).toEqual({ a: '1' });
    expect(informer.get(ns.name, 'trim-listed')?.metadata?.managedFields).toBeUndefined();
    // Without the option they stay.
    expect(plain.get(ns.name, 'trim-listed')?.metadata?.managedFields?.length).toBeGreaterThan(0);

    await createConfigMap('trim-watched', { v: '1' });
    const watched = await poll('the add', () => informer.get(ns.name, 'trim-watched'));
    expect(watched.metadata?.managedFields).toBeUndefined();

    const answer = await core().patchNamespacedConfigMap(
      { name: 'trim-watched', namespace: ns.name, body: { data: { v: '2' } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    informer.written(answer);
    expect(informer.get(ns.name, 'trim-watched')?.data).toEqual({ v: '2' });
    expect(informer.get(ns.name, 'trim-watched')?.metadata?.managedFields).toBeUndefined();
    expect(answer.metadata?.managedFields?.length).toBeGreaterThan(0);
    for (const name of ['trim-listed', 'trim-watched'])
      await core().deleteNamespacedConfigMap({ name, namespace: ns.name });
  });

  test('lists in pages of pageSize and counts the requests by verb', async () => {
    const label = { page: randomBytes(3).toString('hex') };
    await Promise.all(Array.from({ length: 7 }, (_, i) => createConfigMap(`page-${i}`, {}, label)));
    const metrics = new Registry();
    const { informer } = startInformer(
      { name: 'paged', pageSize: 2, labelSelector: `page=${label.page}` },
      metrics,
    );
    await informer.waitForSync();
    expect(informer.list()).toHaveLength(7);
    const text = await metrics.render();
    // 7 objects in pages of 2: four list requests, then a watch.
    expect(text).toContain('rest_client_requests_total{verb="list",code="200"} 4');
    expect(text).toContain('informer_lists_total{informer="paged",cause="initial"} 1');
    expect(text).toContain('informer_objects{informer="paged"} 7');
    expect(informer.name).toBe('paged');
    expect(informer.getByKey(`${ns.name}/page-3`)?.metadata?.name).toBe('page-3');
    await eventually('the watch request', async () =>
      (await metrics.render()).includes('rest_client_requests_total{verb="watch",code="200"} 1')
        ? true
        : undefined,
    );
  });

  test('a label selector filters, and an object that stops matching is deleted from the cache', async () => {
    const selector = { sel: randomBytes(3).toString('hex') };
    await createConfigMap('matching', {}, selector);
    await createConfigMap('not-matching', {}, { sel: 'other' });
    const { informer, events } = startInformer({ labelSelector: `sel=${selector.sel}` });
    await informer.waitForSync();
    expect(informer.keys()).toEqual([`${ns.name}/matching`]);

    await core().patchNamespacedConfigMap(
      { name: 'matching', namespace: ns.name, body: { metadata: { labels: { sel: 'changed' } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    await poll('the object to leave the cache', () => (informer.keys().length === 0 ? true : undefined));
    expect(events.at(-1)).toEqual({ type: 'delete', key: `${ns.name}/matching`, finalStateUnknown: false });
  });

  test('a periodic resync relists and emits an update for every object, marked as resync', async () => {
    const label = { resync: randomBytes(3).toString('hex') };
    await createConfigMap('resync-a', {}, label);
    await createConfigMap('resync-b', {}, label);
    const { informer, events } = startInformer({
      resyncPeriodMs: 1000,
      labelSelector: `resync=${label.resync}`,
    });
    await informer.waitForSync();
    await poll('two resyncs', () => (informer.stats.resyncs >= 2 ? true : undefined), 20_000);
    const resyncs = events.filter((e) => e.type === 'update' && e.resync);
    expect(new Set(resyncs.map((e) => e.key))).toEqual(
      new Set([`${ns.name}/resync-a`, `${ns.name}/resync-b`]),
    );
    expect(resyncs.length).toBeGreaterThanOrEqual(4);
    expect(informer.stats.relists).toBe(informer.stats.resyncs);
  });

  test('handlers added after the sync get the cached objects replayed as adds; unsubscribing stops events', async () => {
    const label = { late: randomBytes(3).toString('hex') };
    await createConfigMap('late-a', {}, label);
    const { informer } = startInformer({ labelSelector: `late=${label.late}` });
    await informer.waitForSync();
    const seen: string[] = [];
    const unsubscribe = informer.addHandlers({
      onAdd: (o, info) => seen.push(`add ${o.metadata?.name} ${info.initialList}`),
    });
    expect(seen).toEqual(['add late-a true']);
    await createConfigMap('late-b', {}, label);
    await poll('late-b', () => (seen.length === 2 ? true : undefined));
    expect(seen[1]).toBe('add late-b false');
    unsubscribe();
    await createConfigMap('late-c', {}, label);
    await poll('late-c in the cache', () => informer.get(ns.name, 'late-c'));
    expect(seen).toHaveLength(2);
  });

  test('watches all namespaces when no namespace is given', async () => {
    const label = { across: randomBytes(3).toString('hex') };
    const other = `${ns.name}-b`;
    await core().createNamespace({ body: { metadata: { name: other } } });
    try {
      await createConfigMap('here', {}, label);
      await core().createNamespacedConfigMap({
        namespace: other,
        body: { metadata: { name: 'there', labels: label } },
      });
      const { informer } = startInformer({ namespace: undefined, labelSelector: `across=${label.across}` });
      await informer.waitForSync();
      expect(informer.keys().sort()).toEqual([`${ns.name}/here`, `${other}/there`].sort());
      expect(informer.list(other).map((o) => o.metadata?.name)).toEqual(['there']);
    } finally {
      await core()
        .deleteNamespace({ name: other })
        .catch(() => undefined);
    }
  });

  test('informs on cluster-scoped resources (namespaces)', async () => {
    const { informer } = startInformer<k8s.V1Namespace>({
      resource: { apiVersion: 'v1', resource: 'namespaces', namespaced: false },
      namespace: 'ignored-for-cluster-scoped',
      labelSelector: 'kube-actions.dev/test=true',
    });
    await informer.waitForSync();
    expect(informer.get('', ns.name)?.kind).toBe('Namespace');
  });

  test('stop() ends the open watch (not waiting out its 10-minute timeout); the cache stops changing', async () => {
    const { informer } = startInformer({ watchTimeoutSeconds: 600 });
    await informer.waitForSync();
    await poll('the watch to be open', () => (informer.stats.watches > 0 ? true : undefined));
    await informer.stop();
    expect(informer.isRunning()).toBe(false);
    await createConfigMap('after-stop');
    await new Promise((r) => setTimeout(r, 500)); // nothing to wait for: proving an absence
    expect(informer.get(ns.name, 'after-stop')).toBeUndefined();
    expect(() => informer.start()).toThrow(/stopped/);
  });
});
