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

describe('deploy/', () => {
  test('the chart lints cleanly', async () => {
    const { stdout } = await run('helm', ['lint', '--strict', chart]);
    expect(stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  test('install.yaml is what the chart renders (run `make manifests` after changing either)', async () => {
    const { stdout } = await run('helm', [
      'template',
      'kube-actions',
      chart,
      '--namespace',
      'kube-actions',
      '--include-crds',
    ]);
    const committed = await readFile(join(root, 'deploy/install.yaml'), 'utf8');
    // The file is a header and the Namespace, then exactly helm's output (see `make manifests`).
    expect(committed.endsWith(stdout)).toBe(true);
    expect(committed.slice(0, committed.length - stdout.length)).toMatch(
      /^# Generated[^]*kind: Namespace\nmetadata:\n {2}name: kube-actions\n$/,
    );
    for (const crd of await readdir(join(root, 'deploy/crds'))) {
      expect(await readFile(join(chart, 'crds', crd), 'utf8')).toBe(
        await readFile(join(root, 'deploy/crds', crd), 'utf8'),
      );
    }
  });

  test('every object the chart installs passes a server-side dry-run, in a namespace that exists', async () => {
    const { stdout } = await run('helm', [
      'template',
      'kube-actions',
      chart,
      '--namespace',
      ns.name,
      '--include-crds',
    ]);
    const objects = parseAllDocuments(stdout)
      .map((d) => d.toJS() as KubeResource | null)
      .filter((o): o is KubeResource => o !== null);
    expect(objects.map((o) => o.kind).sort()).toEqual([
      'ClusterRole',
      'ClusterRoleBinding',
      'CustomResourceDefinition',
      'CustomResourceDefinition',
      'CustomResourceDefinition',
      'CustomResourceDefinition',
      'CustomResourceDefinition',
      'Deployment',
      'Service',
      'ServiceAccount',
    ]);
    const client = new KubeClient(testKubeConfig());
    try {
      const resources = new ResourceManager(client, new RESTMapper(client), {
        fieldManager: 'kube-actions-tests',
      });
      const resolved = await resources.resolve(objects, ns.name);
      // Nothing may pass as "created by the same install": every object is really dry-run.
      const outcomes = await resources.dryRun(resolved, () => false);
      expect(outcomes.filter((o) => o.error).map((o) => `${o.resolved.key}: ${o.error}`)).toEqual([]);
      expect(outcomes.filter((o) => !o.merged).map((o) => o.resolved.key)).toEqual([]);
      const deployment = outcomes.find((o) => o.resolved.object.kind === 'Deployment')!.merged!;
      expect(deployment.metadata.namespace).toBe(ns.name);
      expect(outcomes.find((o) => o.resolved.object.kind === 'ClusterRole')?.merged?.metadata.name).toBe(
        'kube-actions-controller',
      );
    } finally {
      await client.close();
    }
  });
});
