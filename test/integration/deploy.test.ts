// deploy/: the Helm chart lints and renders to exactly the committed deploy/install.yaml, its CRDs
// are deploy/crds, and every object it installs passes a server-side dry-run on a real apiserver
// (in a namespace that exists, so no object is waved through as "created by the same install").
import { describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { ResourceManager } from '../../src/core/kube/apply.ts';
import { RESTMapper } from '../../src/core/kube/discovery.ts';
import type { KubeResource } from '../../src/core/kube/resource.ts';
import { KubeClient } from '../../src/core/kube/client.ts';
import { testKubeConfig, useTestNamespace } from '../cluster/testing.ts';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');
const chart = join(root, 'deploy/chart/kube-actions');

const ns = useTestNamespace('deploy');

/** `helm template kube-actions` of the chart into `namespace`, with extra flags. */
async function render(namespace: string, ...flags: string[]): Promise<string> {
  const { stdout } = await run('helm', [
    'template',
    'kube-actions',
    chart,
    '--namespace',
    namespace,
    ...flags,
  ]);
  return stdout;
}

function objectsOf(stdout: string): KubeResource[] {
  return parseAllDocuments(stdout)
    .map((d) => d.toJS() as KubeResource | null)
    .filter((o): o is KubeResource => o !== null);
}

/** Server-side dry-runs of every object, none waved through as "created by the same install". */
async function dryRunAll(objects: KubeResource[]) {
  const client = new KubeClient(testKubeConfig());
  try {
    const resources = new ResourceManager(client, new RESTMapper(client), {
      fieldManager: 'kube-actions-tests',
    });
    const outcomes = await resources.dryRun(await resources.resolve(objects, ns.name), () => false);
    expect(outcomes.filter((o) => o.error || !o.merged).map((o) => `${o.resolved.key}: ${o.error}`)).toEqual(
      [],
    );
    return outcomes;
  } finally {
    await client.close();
  }
}

describe('deploy/', () => {
  test('the chart lints cleanly', async () => {
    const { stdout } = await run('helm', ['lint', '--strict', chart]);
    expect(stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  test('install.yaml is what the chart renders (run `make manifests` after changing either)', async () => {
    const stdout = await render('kube-actions', '--include-crds');
    const committed = await readFile(join(root, 'deploy/install.yaml'), 'utf8');
    // The file is a header and the Namespace, then exactly helm's output (see `make manifests`).
    expect(committed.endsWith(stdout)).toBe(true);
    expect(committed.slice(0, committed.length - stdout.length)).toMatch(
      /^# Generated[^]*kind: Namespace\nmetadata:\n {2}name: kube-actions\n$/,
    );
    const namespaced = await render('kube-actions', '--set', 'installMode=namespace', '--skip-crds');
    const committedNamespaced = await readFile(join(root, 'deploy/namespace-install.yaml'), 'utf8');
    expect(committedNamespaced.endsWith(namespaced)).toBe(true);
    expect(committedNamespaced.slice(0, committedNamespaced.length - namespaced.length)).toMatch(
      /^# Generated[^]*\n$/,
    );
    for (const crd of await readdir(join(root, 'deploy/crds'))) {
      expect(await readFile(join(chart, 'crds', crd), 'utf8')).toBe(
        await readFile(join(root, 'deploy/crds', crd), 'utf8'),
      );
    }
  });

  test('every object the chart installs passes a server-side dry-run, in a namespace that exists', async () => {
    const objects = objectsOf(await render(ns.name, '--include-crds'));
    expect(objects.map((o) => o.kind).sort()).toEqual([
      'ClusterRole',
      'ClusterRoleBinding',
      // Application, ApplicationSet, Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun
      ...Array<string>(6).fill('CustomResourceDefinition'),
      'Deployment',
      'Service',
      'ServiceAccount',
    ]);
    const outcomes = await dryRunAll(objects);
    const deployment = outcomes.find((o) => o.resolved.object.kind === 'Deployment')!.merged!;
    expect(deployment.metadata.namespace).toBe(ns.name);
    expect(outcomes.find((o) => o.resolved.object.kind === 'ClusterRole')?.merged?.metadata.name).toBe(
      'kube-actions-controller',
    );
  });

  test('the namespace-scoped install: a Role and its binding, no cluster-scoped object, all passing a dry-run', async () => {
    const objects = objectsOf(await render(ns.name, '--set', 'installMode=namespace', '--skip-crds'));
    expect(objects.map((o) => o.kind).sort()).toEqual([
      'Deployment',
      'Role',
      'RoleBinding',
      'Service',
      'ServiceAccount',
    ]);
    const outcomes = await dryRunAll(objects);
    expect(outcomes.every((o) => o.resolved.namespace === ns.name)).toBe(true);
    const deployment = objects.find((o) => o.kind === 'Deployment') as unknown as {
      spec: { template: { spec: { containers: { args: string[] }[] } } };
    };
    expect(deployment.spec.template.spec.containers[0]!.args).toEqual(
      expect.arrayContaining(['--namespaced', `--namespace=${ns.name}`]),
    );
  });
});
