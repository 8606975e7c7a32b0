import { describe, expect, test } from '@jest/globals';
import {
  ignoredPaths,
  lookup,
  managedFieldPaths,
  overlay,
  parsePointer,
  rulesFor,
} from '../../../src/core/kube/ignore-differences.ts';
import { jqPaths } from '../../../src/core/kube/jq-paths.ts';
import type { KubeResource } from '../../../src/core/kube/resource.ts';

// A Deployment as the apiserver returns it after an HPA scaled it and a webhook set an env
// value: managedFields as kube-apiserver writes them (fieldsV1).
const live: KubeResource = {
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: {
    name: 'web',
    namespace: 'prod',
    managedFields: [
      {
        manager: 'kube-actions',
        operation: 'Apply',
        fieldsType: 'FieldsV1',
        fieldsV1: { 'f:spec': { 'f:replicas': {}, 'f:template': { 'f:spec': { 'f:containers': {} } } } },
      },
      {
        manager: 'kube-controller-manager',
        operation: 'Update',
        subresource: 'scale',
        fieldsType: 'FieldsV1',
        fieldsV1: { 'f:spec': { 'f:replicas': {} } },
      },
      {
        manager: 'injector',
        operation: 'Update',
        fieldsType: 'FieldsV1',
        fieldsV1: {
          'f:spec': {
            'f:template': {
              'f:spec': {
                'f:containers': {
                  'k:{"name":"main"}': {
                    '.': {},
                    'f:env': { 'k:{"name":"TOKEN"}': { '.': {}, 'f:value': {} } },
                  },
                },
              },
            },
          },
        },
      },
    ],
  },
  spec: {
    replicas: 7,
    template: {
      spec: {
        containers: [
          { name: 'side', image: 'side:1' },
          {
            name: 'main',
            image: 'web:2',
            env: [
              { name: 'A', value: 'a' },
              { name: 'TOKEN', value: 'injected' },
            ],
          },
        ],
      },
    },
  },
};

describe('ignoreDifferences', () => {
  test('rules match by group and kind, and by name and namespace only when given', () => {
    const rules = [
      { group: 'apps', kind: 'Deployment', jsonPointers: ['/spec/replicas'] },
      { group: 'apps', kind: 'Deployment', name: 'other', jsonPointers: ['/a'] },
      { group: 'apps', kind: 'Deployment', namespace: 'prod', jsonPointers: ['/b'] },
      { kind: 'Deployment', jsonPointers: ['/core-group-only'] },
      { group: 'apps', kind: 'StatefulSet', jsonPointers: ['/c'] },
    ];
    const matched = rulesFor(rules, { group: 'apps', kind: 'Deployment', name: 'web', namespace: 'prod' });
    expect(matched.map((r) => r.jsonPointers?.[0])).toEqual(['/spec/replicas', '/b']);
    expect(rulesFor(rules, { group: '', kind: 'Deployment', name: 'web', namespace: 'x' })).toEqual([
      rules[3],
    ]);
  });

  test('JSON pointers follow RFC 6901 and a malformed one is an error', () => {
    expect(parsePointer('/metadata/annotations/a~1b~0c')).toEqual(['metadata', 'annotations', 'a/b~c']);
    expect(parsePointer('')).toEqual([]);
    expect(() => parsePointer('spec/replicas')).toThrow(/must start with "\/"/);
  });

  test("managedFieldsManagers name the fields those managers own, resolved to the live object's list indexes", () => {
    expect(managedFieldPaths(live, ['kube-controller-manager'])).toEqual([['spec', 'replicas']]);
    expect(managedFieldPaths(live, ['injector'])).toEqual([
      ['spec', 'template', 'spec', 'containers', 1, 'env', 1, 'value'],
    ]);
    // Status a manager writes is neither applied nor compared: never a path.
    const withStatus = structuredClone(live);
    (withStatus.metadata.managedFields as unknown[]).push({
      manager: 'kube-controller-manager',
      operation: 'Update',
      subresource: 'status',
      fieldsType: 'FieldsV1',
      fieldsV1: { 'f:status': { 'f:conditions': { '.': {}, 'k:{"type":"Available"}': { 'f:status': {} } } } },
    });
    withStatus.status = { conditions: [{ type: 'Available', status: 'True' }] };
    expect(managedFieldPaths(withStatus, ['kube-controller-manager'])).toEqual([['spec', 'replicas']]);
    // A manager the object does not list owns nothing; neither does one whose item is gone.
    expect(managedFieldPaths(live, ['nobody'])).toEqual([]);
    const withoutToken = structuredClone(live);
    (
      withoutToken.spec as { template: { spec: { containers: { env: unknown[] }[] } } }
    ).template.spec.containers[1]!.env = [];
    expect(managedFieldPaths(withoutToken, ['injector'])).toEqual([]);
  });

  test('respecting the ignored fields: the desired object takes their live values, and keeps its own where live has none', () => {
    const desired: KubeResource = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web' },
      spec: {
        replicas: 2,
        paused: false,
        template: {
          spec: {
            containers: [
              { name: 'side', image: 'side:1' },
              { name: 'main', image: 'web:3', env: [{ name: 'A', value: 'a' }, { name: 'TOKEN' }] },
            ],
          },
        },
      },
    };
    const paths = ignoredPaths(
      [
        {
          group: 'apps',
          kind: 'Deployment',
          jsonPointers: ['/spec/paused'],
          managedFieldsManagers: ['kube-controller-manager', 'injector'],
        },
      ],
      live,
    );
    const respected = overlay(desired, live, paths, false);
    expect(lookup(respected, ['spec', 'replicas']).value).toBe(7);
    expect(lookup(respected, ['spec', 'template', 'spec', 'containers', 1, 'env', 1]).value).toEqual({
      name: 'TOKEN',
      value: 'injected',
    });
    // Live has no spec.paused: the desired value stays, to be applied.
    expect(lookup(respected, ['spec', 'paused'])).toEqual({ found: true, value: false });
    // What is not ignored is still the desired object's, and the input is not changed.
    expect(lookup(respected, ['spec', 'template', 'spec', 'containers', 1, 'image']).value).toBe('web:3');
    expect((desired.spec as { replicas: number }).replicas).toBe(2);
    // For a comparison, an ignored field live lacks is left out as well.
    expect(lookup(overlay(desired, live, paths, true), ['spec', 'paused']).found).toBe(false);
  });
});

describe('jqPathExpressions (jq itself, in its own process)', () => {
  test("a path expression names fields as Argo CD's del(EXPR) removes them", async () => {
    expect(
      await jqPaths(
        '.spec.template.spec.containers[] | select(.name == "main") | .env[] | select(.name == "TOKEN") | .value',
        live,
      ),
    ).toEqual([['spec', 'template', 'spec', 'containers', 1, 'env', 1, 'value']]);
    expect(await jqPaths('.spec.template.spec.containers[].image', live)).toEqual([
      ['spec', 'template', 'spec', 'containers', 0, 'image'],
      ['spec', 'template', 'spec', 'containers', 1, 'image'],
    ]);
  });

  test('an expression that never ends is killed at its deadline, and the event loop goes on meanwhile', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const started = performance.now();
    await expect(jqPaths('def f: f; f', live, 300)).rejects.toThrow(/took longer than 300 ms/);
    clearInterval(timer);
    expect(performance.now() - started).toBeLessThan(5000);
    expect(ticks).toBeGreaterThan(5);
  });

  test('jq errors are reported, and builtins that read the environment or files are refused before jq runs', async () => {
    await expect(jqPaths('.spec | tostring', live)).rejects.toThrow(/Invalid path expression/);
    await expect(jqPaths('.spec[', live)).rejects.toThrow(/jq expression/);
    process.env.IGNORE_DIFF_SECRET = 'hunter2';
    try {
      for (const hostile of [
        'error(env.IGNORE_DIFF_SECRET)',
        'error($ENV.IGNORE_DIFF_SECRET)',
        'input',
        'import "x" as $x; .',
      ])
        await expect(jqPaths(hostile, live)).rejects.toThrow(/is not allowed here/);
      // $__loc__ is refused as well; and jq runs with no environment but PATH.
      await expect(jqPaths('error(($__loc__ | tostring))', live)).rejects.toThrow(/is not allowed here/);
    } finally {
      delete process.env.IGNORE_DIFF_SECRET;
    }
  });
});
