import { describe, expect, test } from '@jest/globals';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { analysisRunSpec, resolveFieldPath } from '../../../src/controller/analysis/templates.ts';
import type { AnalysisTemplateSpec, Metric } from '../../../src/controller/analysis/types.ts';

const m = (name: string): Metric => ({ name, provider: { web: { url: 'http://{{args.host}}' } } });
const t = (spec: AnalysisTemplateSpec) => ({ spec });

describe('analysisRunSpec (Argo NewAnalysisRunFromTemplates)', () => {
  test('concatenates metrics and merges args; the caller fills them in', () => {
    const spec = analysisRunSpec(
      [
        t({ args: [{ name: 'host' }, { name: 'fixed', value: 'x' }], metrics: [m('a')] }),
        t({ args: [{ name: 'host' }], metrics: [m('b')], dryRun: [{ metricName: 'b' }] }),
      ],
      {
        args: [
          { name: 'host', value: 'svc' },
          { name: 'ignored', value: '1' },
        ],
      },
    );
    expect(spec.metrics.map((x) => x.name)).toEqual(['a', 'b']);
    expect(spec.args).toEqual([
      { name: 'host', value: 'svc' },
      { name: 'fixed', value: 'x' },
    ]);
    expect(spec.dryRun).toEqual([{ metricName: 'b' }]);
  });

  test('duplicate metric names, conflicting arg values and unresolved args are errors', () => {
    expect(() => analysisRunSpec([t({ metrics: [m('a')] }), t({ metrics: [m('a')] })])).toThrow(
      "two metrics have the same name 'a'",
    );
    expect(() =>
      analysisRunSpec([
        t({ args: [{ name: 'x', value: '1' }], metrics: [m('a')] }),
        t({ args: [{ name: 'x', value: '2' }] }),
      ]),
    ).toThrow("Argument `x` specified multiple times with different values: '1', '2'");
    expect(() => analysisRunSpec([t({ args: [{ name: 'host' }], metrics: [m('a')] })])).toThrow(
      'args.host was not resolved',
    );
    expect(() => analysisRunSpec([t({})])).toThrow('the templates have no metrics');
  });

  test('secretKeyRef args stay references; fieldRef args are read from the creating object', () => {
    const spec = analysisRunSpec(
      [
        t({
          args: [
            { name: 'token', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } },
            { name: 'app', valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
          ],
          metrics: [m('a')],
        }),
      ],
      { fieldRefSource: { metadata: { labels: { app: 'guestbook' } } } },
    );
    expect(spec.args).toEqual([
      { name: 'token', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } },
      { name: 'app', value: 'guestbook' },
    ]);
  });

  test('resolveFieldPath', () => {
    const obj = {
      metadata: { name: 'r', labels: { 'app.kubernetes.io/name': 'x' } },
      spec: { replicas: 3, list: [{ a: 1 }] },
    };
    expect(resolveFieldPath(obj, 'metadata.name')).toBe('r');
    expect(resolveFieldPath(obj, "metadata.labels['app.kubernetes.io/name']")).toBe('x');
    expect(resolveFieldPath(obj, "metadata.annotations['none']")).toBe('');
    expect(resolveFieldPath(obj, 'spec.replicas')).toBe('3');
    expect(resolveFieldPath(obj, 'spec.list[0].a')).toBe('1');
    expect(() => resolveFieldPath(obj, 'spec.nope')).toThrow(/not found/);
    expect(() => resolveFieldPath(obj, 'spec')).toThrow(/primitive/);
  });
});

describe('CRDs', () => {
  const load = async (file: string) =>
    parse(await readFile(resolve(import.meta.dirname, '../../../deploy/crds', file), 'utf8')) as {
      spec: {
        versions: Array<{
          schema: { openAPIV3Schema: { properties: { spec: { properties: Record<string, unknown> } } } };
        }>;
      };
    };
  test('the three analysis CRDs share one metric and args schema', async () => {
    const specs = await Promise.all(
      ['analysis-template.yaml', 'analysis-clustertemplate.yaml', 'analysis-run.yaml'].map(async (f) => {
        return (await load(f)).spec.versions[0]!.schema.openAPIV3Schema.properties.spec.properties;
      }),
    );
    const [template, cluster, run] = specs as [
      Record<string, { items?: unknown }>,
      Record<string, { items?: unknown }>,
      Record<string, { items?: unknown }>,
    ];
    expect(cluster).toEqual(template);
    for (const field of ['args', 'dryRun', 'measurementRetention'])
      expect(run[field]).toEqual(template[field]);
    expect(run.metrics!.items).toEqual(template.metrics!.items);
    expect(run.terminate).toEqual(expect.objectContaining({ type: 'boolean' }));
  });
});
