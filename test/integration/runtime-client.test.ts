// KubeClient against the real apiserver: CRUD with optimistic concurrency, API errors as
// client-node ApiExceptions, generated API clients sharing the counting transport, and the shared
// connection pool surviving a request aborted mid-response.
import { afterAll, describe, expect, test } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { isConflict, isNotFound, KubeClient, PatchType, statusCode } from '../../src/core/kube/client.ts';
import { Registry } from '../../src/core/metrics.ts';
import { resourcePath } from '../../src/core/kube/objects.ts';
import { useTestNamespace } from '../cluster/testing.ts';

const ns = useTestNamespace('rt-client');
const configMaps = { apiVersion: 'v1', resource: 'configmaps' };
const metrics = new Registry();
const client = new KubeClient(ns.kc, { metrics });
afterAll(() => client.close());

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (err: unknown) => err,
  );

describe('KubeClient', () => {
  test('creates, reads, updates (409 when stale), patches and deletes', async () => {
    const created = await client.create<k8s.V1ConfigMap>(configMaps, {
      metadata: { name: 'crud', namespace: ns.name },
      data: { v: '1' },
    });
    expect(created.metadata?.uid).toBeTruthy();
    const read = await client.get<k8s.V1ConfigMap>(configMaps, ns.name, 'crud');
    expect(read.data).toEqual({ v: '1' });

    const updated = await client.update<k8s.V1ConfigMap>(configMaps, { ...read, data: { v: '2' } });
    expect(updated.data).toEqual({ v: '2' });
    // `read` carries the old resourceVersion.
    const stale = await failure(client.update(configMaps, { ...read, data: { v: '3' } }));
    expect(isConflict(stale)).toBe(true);

    const patched = await client.patch<k8s.V1ConfigMap>(configMaps, ns.name, 'crud', { data: { w: 'x' } });
    expect(patched.data).toEqual({ v: '2', w: 'x' });
    const applied = await client.patch<k8s.V1ConfigMap>(
      configMaps,
      ns.name,
      'crud',
      JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'crud' }, data: { a: 'y' } }),
      PatchType.apply,
      { fieldManager: 'runtime-test', force: true },
    );
    expect(applied.data).toMatchObject({ a: 'y' });

    await client.delete(configMaps, ns.name, 'crud');
    const missing = await failure(client.get(configMaps, ns.name, 'crud'));
    expect(isNotFound(missing)).toBe(true);
    expect((missing as Error).message).toContain(`GET ${resourcePath(configMaps, ns.name, 'crud')}`);
    expect((missing as k8s.ApiException<{ reason?: string }>).body.reason).toBe('NotFound');
  });

  test('sends the headers a request asks for (here: impersonating a user who may do nothing)', async () => {
    const path = `/api/v1/namespaces/${ns.name}/configmaps`;
    await expect(client.request('GET', path)).resolves.toBeDefined();
    expect(
      String(await failure(client.request('GET', path, { headers: { 'Impersonate-User': 'nobody' } }))),
    ).toMatch(/forbidden: User "nobody" cannot list resource "configmaps"/);
  });

  test('a watch the server refuses throws its status', async () => {
    const err = await failure(
      client.watchLines('/apis/example.invalid/v1/nothings', {}, AbortSignal.timeout(5000)),
    );
    expect(statusCode(err)).toBe(404);
  });

  test('generated API clients use the same transport, counted by verb', async () => {
    const before =
      (await metrics.render()).match(/rest_client_requests_total\{verb="list",code="200"\} (\d+)/)?.[1] ??
      '0';
    const core = client.makeApiClient(k8s.CoreV1Api);
    const list = await core.listNamespacedConfigMap({ namespace: ns.name });
    expect(Array.isArray(list.items)).toBe(true);
    expect(await metrics.render()).toContain(
      `rest_client_requests_total{verb="list",code="200"} ${Number(before) + 1}`,
    );
    expect(await metrics.render()).toMatch(/rest_client_request_duration_seconds_count\{verb="list"\} [1-9]/);
  });

  test('the connection pool keeps working after a request is aborted mid-response', async () => {
    // A watch read through request() never completes: its body read times out after headers.
    const aborted = await failure(
      client.request('GET', resourcePath(configMaps, ns.name), {
        query: { watch: 'true', timeoutSeconds: 60 },
        timeoutMs: 300,
      }),
    );
    expect((aborted as Error).name).toMatch(/TimeoutError|AbortError/);
    for (let i = 0; i < 3; i++) {
      await client.get(configMaps, ns.name, 'absent').catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
    }
    expect(await metrics.render()).toContain('rest_client_requests_total{verb="get",code="404"} ');
    await client.close();
    // Closing drops the pool; the next request opens a new one.
    expect(
      (
        await client.get<k8s.V1Namespace>(
          { apiVersion: 'v1', resource: 'namespaces', namespaced: false },
          '',
          ns.name,
        )
      ).metadata?.name,
    ).toBe(ns.name);
  });
});
