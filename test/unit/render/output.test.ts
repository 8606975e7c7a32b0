import { describe, expect, test } from '@jest/globals';
import type { KubeObject } from '../../../src/core/render/manifest.ts';
import { sortObjects, toFiles, toStream } from '../../../src/core/render/output.ts';

const obj = (apiVersion: string, kind: string, name: string, namespace?: string, extra = {}): KubeObject => ({
  apiVersion,
  kind,
  metadata: { name, ...(namespace ? { namespace } : {}) },
  ...extra,
});

describe('output', () => {
  test('orders Namespaces first, dependencies before dependents (as a sync applies them), unknown kinds last', () => {
    const sorted = sortObjects([
      obj('example.com/v1', 'Widget', 'w', 'a'),
      obj('apps/v1', 'Deployment', 'web', 'a'),
      obj('v1', 'Service', 'web', 'a'),
      obj('v1', 'Namespace', 'a'),
      obj('v1', 'ConfigMap', 'cfg', 'a'),
      obj('apiextensions.k8s.io/v1', 'CustomResourceDefinition', 'widgets.example.com'),
    ]);
    expect(sorted.map((o) => o.kind)).toEqual([
      'Namespace',
      'ConfigMap',
      'CustomResourceDefinition',
      'Service',
      'Deployment',
      'Widget',
    ]);
  });

  test('the stream is identical whatever order the input came in, and long strings are not folded', () => {
    const long = 'x'.repeat(300);
    const a = [obj('v1', 'ConfigMap', 'b', 'n', { data: { k: long } }), obj('v1', 'ConfigMap', 'a', 'n')];
    const stream = toStream(a);
    expect(toStream([...a].reverse())).toBe(stream);
    expect(stream).toContain(`k: ${long}\n`);
    expect(stream.startsWith('---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n')).toBe(true);
  });

  test('file names are <kind>-<name>.yaml, qualified only when they would collide', () => {
    const files = toFiles([
      obj('apps/v1', 'Deployment', 'web', 'prod'),
      obj('v1', 'Service', 'web', 'prod'),
      obj('v1', 'Service', 'web', 'staging'),
      obj('v1', 'ConfigMap', 'cfg', 'prod'),
      obj('example.com/v1', 'ConfigMap', 'cfg', 'prod'),
    ]);
    expect([...files.keys()].sort()).toEqual(
      [
        'v1-configmap-prod-cfg.yaml',
        'deployment-web.yaml',
        'example.com-configmap-prod-cfg.yaml',
        'service-prod-web.yaml',
        'service-staging-web.yaml',
      ].sort(),
    );
  });
});
