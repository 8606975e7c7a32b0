// The controller started with exactly the arguments the Helm chart gives it (rendered by the real
// helm from deploy/chart), against the real control plane: Applications are read from the release
// namespace only, while a Rollout in another namespace (where an Application would deploy it)
// still gets its ReplicaSet. With one --namespace for both, that Rollout never would.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import * as k8s from '@kubernetes/client-node';
import { KubeClient } from '../../src/core/kube/client.ts';
import { ROLLOUT, type ReplicaSet } from '../../src/controller/rollout/types.ts';
import { installCRDs } from '../cluster/crds.ts';
import { freePort } from '../cluster/ports.ts';
import { NODE24 } from '../cluster/run-action.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');
const release = useTestNamespace('chart-release');
const workloads = useTestNamespace('chart-workloads');
let controller: ChildProcess | undefined;
let cache: string;

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
  cache = await mkdtemp(join(tmpdir(), 'chart-args-'));
  const args = await chartArgs(release.name);
  expect(args).toContain(`--application-namespace=${release.name}`);
  const [metrics, webhook] = await Promise.all([freePort(), freePort()]);
  // The chart's arguments as they are; only what a pod provides differently is given after them
  // (the last value of a flag wins): free ports and a cache directory on this machine.
  controller = spawn(
    NODE24,
    [
      join(ROOT, 'dist', 'cli', 'index.js'),
      ...args,
      `--metrics-port=${metrics}`,
      `--webhook-port=${webhook}`,
      `--cache-dir=${cache}`,
      '--log-level=warn',
    ],
    {
      env: { ...process.env, POD_NAMESPACE: release.name, POD_NAME: 'chart-args-test' },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  await eventually(
    'the controller to be ready',
    async () =>
      (await fetch(`http://127.0.0.1:${metrics}/readyz`).then(
        (r) => r.ok,
        () => false,
      ))
        ? true
        : undefined,
    60_000,
  );
}, 120_000);
afterAll(async () => {
  if (controller && controller.exitCode === null) {
    controller.kill('SIGTERM');
    await new Promise((r) => controller!.once('exit', r));
  }
  await rm(cache, { recursive: true, force: true });
});

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
