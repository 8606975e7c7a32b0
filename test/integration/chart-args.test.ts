// The controller started with exactly the arguments the Helm chart gives it (rendered by the real
// helm from deploy/chart), against the real control plane: Applications are read from the release
// namespace only, while a Rollout in another namespace (where an Application would deploy it)
// still gets its ReplicaSet. With one --namespace for both, that Rollout never would.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import * as k8s from '@kubernetes/client-node';
import { KubeClient } from '../../src/core/kube/client.ts';
import { ROLLOUT, type ReplicaSet } from '../../src/controller/rollout/types.ts';
import { installCRDs } from '../cluster/crds.ts';
import { startControllerProcess, type ControllerProcess } from '../cluster/controller-process.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');
const release = useTestNamespace('chart-release');
const workloads = useTestNamespace('chart-workloads');
let controller: ControllerProcess | undefined;

/** The controller container's args as `helm template` renders them for this release namespace. */
async function chartArgs(namespace: string): Promise<string[]> {
  const { stdout } = await run('helm', [
    'template',
    'kube-actions',
    join(ROOT, 'deploy', 'chart', 'kube-actions'),
    '--namespace',
    namespace,
  ]);
  const deployment = parseAllDocuments(stdout)
    .map(
      (d) =>
        d.toJS() as { kind?: string; spec?: { template: { spec: { containers: { args: string[] }[] } } } },
    )
    .find((d) => d?.kind === 'Deployment');
  return deployment!.spec!.template.spec.containers[0]!.args;
}

beforeAll(async () => {
  await installCRDs(release.kc);
  const args = await chartArgs(release.name);
  expect(args).toContain(`--application-namespace=${release.name}`);
  // The chart's arguments as they are; only what a pod provides differently follows them (the
  // last value of a flag wins): free ports and a cache directory on this machine.
  controller = await startControllerProcess(args, {
    env: { POD_NAMESPACE: release.name, POD_NAME: 'chart-args-test' },
    logLevel: 'warn',
  });
}, 120_000);
afterAll(() => controller?.stop());

describe("the controller with the chart's own arguments", () => {
  test('a Rollout outside the release namespace gets its ReplicaSet', async () => {
    const client = new KubeClient(workloads.kc);
    await client.create(ROLLOUT, {
      apiVersion: ROLLOUT.apiVersion,
      kind: 'Rollout',
      metadata: { name: 'web', namespace: workloads.name },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'web' } },
        template: {
          metadata: { labels: { app: 'web' } },
          spec: { containers: [{ name: 'web', image: 'registry.example/web:1' }] },
        },
        strategy: { canary: { steps: [{ setWeight: 50 }, { pause: {} }] } },
      },
    } as never);
    const apps = workloads.kc.makeApiClient(k8s.AppsV1Api);
    const rs = await eventually(
      'a ReplicaSet for the Rollout',
      async () => {
        const list = await apps.listNamespacedReplicaSet({ namespace: workloads.name });
        return (list.items as unknown as ReplicaSet[]).find(
          (r) => r.metadata.ownerReferences?.[0]?.name === 'web',
        );
      },
      60_000,
    );
    expect(rs.spec.replicas).toBe(2);
  });
});
