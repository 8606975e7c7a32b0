// Multiple sources (Argo CD's spec.sources): how the sources' renders combine and what the status
// records of them. The reconciler's side runs on the real control plane in application-sync.test.ts.
import { describe, expect, test } from '@jest/globals';
import { combineSources } from '../../../../src/controller/sync/reconciler.ts';
import {
  refValueFile,
  sourceFields,
  sourcesOf,
  type Application,
} from '../../../../src/controller/sync/types.ts';
import type { KubeResource } from '../../../../src/core/kube/resource.ts';

const cm = (name: string, from: string, namespace?: string): KubeResource => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, ...(namespace ? { namespace } : {}) },
  data: { from },
});

describe('combineSources', () => {
  test("the sources' objects in their order; one source is passed through as it is", () => {
    const one = [cm('a', 's1')];
    expect(combineSources([{ objects: one }], 'apps').objects).toBe(one);
    const { objects, repeated } = combineSources(
      [{ objects: [cm('a', 's1')] }, { objects: [cm('b', 's2')] }],
      'apps',
    );
    expect(objects.map((o) => o.metadata.name)).toEqual(['a', 'b']);
    expect(repeated).toEqual([]);
  });

  test('an object two sources render is the last one’s, where the first stood, and is reported once', () => {
    const { objects, repeated } = combineSources(
      [
        { objects: [cm('a', 's1'), cm('b', 's1')] },
        { objects: [cm('c', 's2'), cm('a', 's2')] },
        { objects: [cm('a', 's3', 'apps')] },
      ],
      'apps',
    );
    expect(objects.map((o) => `${o.metadata.name}:${(o.data as { from: string }).from}`)).toEqual([
      'a:s3',
      'b:s1',
      'c:s2',
    ]);
    expect(repeated).toHaveLength(1);
    expect(repeated[0]).toMatch(/ConfigMap.*apps.*a|ConfigMap.*a.*apps/);
  });

  test('the same name in another namespace or of another kind is another object; generateName hooks never repeat', () => {
    const hook: KubeResource = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { generateName: 'migrate-' },
    };
    const secret: KubeResource = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'a' } };
    const { objects, repeated } = combineSources(
      [{ objects: [cm('a', 's1'), hook] }, { objects: [cm('a', 's2', 'other'), secret, hook] }],
      'apps',
    );
    expect(objects).toHaveLength(5);
    expect(repeated).toEqual([]);
  });
});

describe('what the status records of the sources', () => {
  const base: Application = {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'Application',
    metadata: { name: 'web', namespace: 'apps' },
    spec: { source: { repoURL: 'https://git.example/one.git' }, destination: { namespace: 'web' } },
  };
  const sources = [
    { repoURL: 'https://charts.example', chart: 'web' },
    { repoURL: 'https://git.example/values.git', ref: 'values' },
  ];

  test('one source: source and revision, as before', () => {
    expect(sourcesOf(base)).toEqual([base.spec.source]);
    expect(sourceFields(base, 'abc')).toEqual({ source: base.spec.source });
  });

  test('spec.sources: spec.source is ignored; sources and one revision per source', () => {
    const multi = { ...base, spec: { ...base.spec, sources } };
    expect(sourcesOf(multi)).toBe(sources);
    expect(sourceFields(multi, '1.2.0,abc')).toEqual({ sources, revisions: ['1.2.0', 'abc'] });
    expect(sourceFields(multi)).toEqual({ sources });
    // An empty list is no multiple sources (Argo CD's HasMultipleSources).
    expect(sourcesOf({ ...base, spec: { ...base.spec, sources: [] } })).toEqual([base.spec.source]);
  });
});

test('a `$ref/path` values file names another source; a plain path is this one; a bare `$` is malformed', () => {
  expect(refValueFile('$values/envs/prod.yaml')).toEqual({ ref: 'values', path: 'envs/prod.yaml' });
  expect(refValueFile('values-prod.yaml')).toBeUndefined();
  expect(refValueFile('$values')).toBe('malformed');
  expect(refValueFile('$values/')).toBe('malformed');
});
