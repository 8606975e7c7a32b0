// Pure helpers: REST paths and verbs, object keys, status-code checks, backoff and sleep.
import { describe, expect, test } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { backoffDelay, sleep } from '../../../../src/controller/runtime/backoff.ts';
import { isConflict, isGone, isNotFound, requestVerb, statusCode } from '../../../../src/core/kube/client.ts';
import { groupOf, objectKey, parseKey, requestKey, resourcePath } from '../../../../src/core/kube/objects.ts';

describe('resourcePath', () => {
  const deployments = { apiVersion: 'apps/v1', resource: 'deployments' };
  test('builds core, group, namespaced, cluster-scoped and subresource paths', () => {
    expect(resourcePath({ apiVersion: 'v1', resource: 'configmaps' }, 'ns')).toBe(
      '/api/v1/namespaces/ns/configmaps',
    );
    expect(resourcePath({ apiVersion: 'v1', resource: 'configmaps' })).toBe('/api/v1/configmaps');
    expect(resourcePath(deployments, 'ns', 'web', 'status')).toBe(
      '/apis/apps/v1/namespaces/ns/deployments/web/status',
    );
    expect(resourcePath({ apiVersion: 'v1', resource: 'nodes', namespaced: false }, 'ignored', 'n1')).toBe(
      '/api/v1/nodes/n1',
    );
    expect(resourcePath(deployments, 'a b', 'x/y')).toBe('/apis/apps/v1/namespaces/a%20b/deployments/x%2Fy');
  });
});

describe('requestVerb', () => {
  const base = 'https://k8s:6443';
  test.each([
    ['GET', '/api/v1/namespaces/ns/configmaps', 'list'],
    ['GET', '/api/v1/namespaces/ns/configmaps?watch=true', 'watch'],
    ['GET', '/api/v1/configmaps?watch=1&resourceVersion=5', 'watch'],
    ['GET', '/api/v1/namespaces/ns/configmaps/a', 'get'],
    ['GET', '/api/v1/namespaces/ns', 'get'],
    ['GET', '/api/v1/namespaces', 'list'],
    ['GET', '/apis/apps/v1/namespaces/ns/deployments/web/status', 'get'],
    ['GET', '/apis/apps/v1', 'get'],
    ['GET', '/version', 'get'],
    ['POST', '/api/v1/namespaces/ns/configmaps', 'create'],
    ['PUT', '/apis/coordination.k8s.io/v1/namespaces/ns/leases/l', 'update'],
    ['PATCH', '/api/v1/nodes/n1', 'patch'],
    ['DELETE', '/api/v1/namespaces/ns/configmaps/a', 'delete'],
    ['DELETE', '/api/v1/namespaces/ns/configmaps', 'deletecollection'],
    ['OPTIONS', '/api/v1/namespaces/ns/configmaps', 'options'],
  ])('%s %s is %s', (method, path, verb) => {
    expect(requestVerb(method, `${base}${path}`)).toBe(verb);
  });
});

describe('keys', () => {
  test('namespace/name for namespaced objects, name for cluster-scoped ones, and back', () => {
    expect(objectKey({ metadata: { namespace: 'ns', name: 'a' } })).toBe('ns/a');
    expect(objectKey({ metadata: { name: 'node-1' } })).toBe('node-1');
    expect(() => objectKey({ metadata: {} })).toThrow(/no metadata.name/);
    expect(parseKey('ns/a')).toEqual({ namespace: 'ns', name: 'a' });
    expect(parseKey('node-1')).toEqual({ namespace: '', name: 'node-1' });
    expect(requestKey({ namespace: '', name: 'x' })).toBe('x');
    expect(groupOf('v1')).toBe('');
    expect(groupOf('apps/v1')).toBe('apps');
  });
});

describe('status code helpers', () => {
  test('read the code of client-node ApiExceptions only', () => {
    const err = (code: number) => new k8s.ApiException(code, 'm', {}, {});
    expect(statusCode(err(404))).toBe(404);
    expect(statusCode(new Error('x'))).toBeUndefined();
    expect(isNotFound(err(404))).toBe(true);
    expect(isConflict(err(409))).toBe(true);
    expect(isGone(err(410))).toBe(true);
    expect(isGone(err(404))).toBe(false);
  });
});

describe('backoffDelay', () => {
  test('doubles from the initial delay up to the cap, without jitter', () => {
    const opts = { initialMs: 100, maxMs: 1000, jitter: 0 };
    expect([1, 2, 3, 4, 5, 10].map((n) => backoffDelay(n, opts))).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  test('jitter spreads the delay both ways but never past the cap', () => {
    const opts = { initialMs: 100, maxMs: 1000, jitter: 0.5 };
    expect(backoffDelay(1, { ...opts, random: () => 0 })).toBe(50);
    expect(backoffDelay(1, { ...opts, random: () => 0.999999 })).toBeCloseTo(150, 0);
    expect(backoffDelay(20, { ...opts, random: () => 0.999999 })).toBe(1000);
    expect(backoffDelay(20, { ...opts, random: () => 0 })).toBe(500);
  });
});

describe('sleep', () => {
  test('resolves after the delay, or at once when aborted', async () => {
    const started = performance.now();
    await sleep(20);
    expect(performance.now() - started).toBeGreaterThanOrEqual(19);
    // Without the abort these would outlast the test's timeout: resolving at all is the proof.
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 10);
    await sleep(1_000_000, ac.signal);
    await sleep(1_000_000, ac.signal); // already aborted
  });
});
