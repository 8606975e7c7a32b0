// OwnWrites: the cache answers unless it is behind this controller's own last write; then the API.
// An in-memory cache and API stand in for the informer and the apiserver (the integration tests
// run the controllers that use it against the real ones).
import { describe, expect, test } from '@jest/globals';
import { OwnWrites } from '../../../../src/controller/runtime/own-writes.ts';
import type { KubeObject } from '../../../../src/core/kube/objects.ts';

const REF = { apiVersion: 'kube-actions.dev/v1alpha1', resource: 'applications' };

const obj = (rv: string, data = 'a'): KubeObject & { data: string } => ({
  metadata: { namespace: 'ns', name: 'app', resourceVersion: rv },
  data,
});

function setup(options?: { clone?: boolean }) {
  const cache = new Map<string, KubeObject & { data: string }>();
  const api = new Map<string, KubeObject & { data: string }>();
  const calls: string[] = [];
  const client = {
    get: <T>(_ref: unknown, namespace: string, name: string): Promise<T> => {
      calls.push(`${namespace}/${name}`);
      const found = api.get(`${namespace}/${name}`);
      if (!found) return Promise.reject(Object.assign(new Error('not found'), { code: 404 }));
      return Promise.resolve(found as T);
    },
  };
  const reads = new OwnWrites({ get: (ns, name) => cache.get(`${ns}/${name}`) }, client, REF, options);
  return { cache, api, calls, reads };
}

describe('OwnWrites', () => {
  test('the cache answers when this controller has not written the object', async () => {
    const { cache, calls, reads } = setup();
    cache.set('ns/app', obj('5'));
    await expect(reads.get('ns', 'app')).resolves.toMatchObject({ metadata: { resourceVersion: '5' } });
    expect(calls).toEqual([]);
  });

  test('a cache behind our own write is passed over for the API, until it catches up', async () => {
    const { cache, api, calls, reads } = setup();
    cache.set('ns/app', obj('5', 'before'));
    api.set('ns/app', obj('6', 'written'));
    reads.wrote(obj('6', 'written'));
    await expect(reads.get('ns', 'app')).resolves.toMatchObject({ data: 'written' });
    expect(calls).toEqual(['ns/app']);
    cache.set('ns/app', obj('6', 'written'));
    await expect(reads.get('ns', 'app')).resolves.toMatchObject({ data: 'written' });
    expect(calls).toEqual(['ns/app']);
  });

  test('someone else wrote after us: the API version is remembered, so the cache serves it once it has it', async () => {
    const { cache, api, calls, reads } = setup();
    cache.set('ns/app', obj('5'));
    reads.wrote(obj('6'));
    api.set('ns/app', obj('7', 'theirs'));
    await expect(reads.get('ns', 'app')).resolves.toMatchObject({ data: 'theirs' });
    cache.set('ns/app', obj('7', 'theirs'));
    await reads.get('ns', 'app');
    expect(calls).toEqual(['ns/app']);
  });

  test('an object not in the cache is looked up; one gone from the API is undefined and forgotten', async () => {
    const { cache, calls, reads } = setup();
    await expect(reads.get('ns', 'app')).resolves.toBeUndefined();
    reads.wrote(obj('6'));
    await expect(reads.get('ns', 'app')).resolves.toBeUndefined();
    // Forgotten: a later cached copy is served as it is.
    cache.set('ns/app', obj('9'));
    await expect(reads.get('ns', 'app')).resolves.toMatchObject({ metadata: { resourceVersion: '9' } });
    expect(calls).toEqual(['ns/app', 'ns/app']);
  });

  test('clone hands out a copy, so an edit never reaches the cache', async () => {
    const { cache, reads } = setup({ clone: true });
    cache.set('ns/app', obj('5'));
    const got = (await reads.get('ns', 'app')) as KubeObject & { data: string };
    got.data = 'edited';
    expect(cache.get('ns/app')?.data).toBe('a');
  });

  test('other errors than not-found propagate', async () => {
    const { reads } = setup();
    const failing = new OwnWrites(
      { get: () => undefined },
      { get: () => Promise.reject(Object.assign(new Error('forbidden'), { code: 403 })) },
      REF,
    );
    await expect(failing.get('ns', 'app')).rejects.toThrow('forbidden');
    await expect(reads.get('ns', 'app')).resolves.toBeUndefined();
  });
});
