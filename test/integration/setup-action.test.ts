// The setup action, run as the runner runs it: it puts a `kube-actions` command on PATH (through
// GITHUB_PATH) that later steps use as a deployment gate against the cluster.
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { KubeClient } from '../../src/core/kube/client.ts';
import { ROLLOUT } from '../../src/controller/rollout/types.ts';
import { installCRDs } from '../cluster/crds.ts';
import { runAction } from '../cluster/run-action.ts';
import { useTestNamespace } from '../cluster/testing.ts';
import pkg from '../../package.json' with { type: 'json' };

const run = promisify(execFile);
const ns = useTestNamespace('setup-action');
let temp: string;

beforeAll(async () => {
  temp = await mkdtemp(join(tmpdir(), 'setup-action-'));
  await installCRDs(ns.kc);
});
afterAll(() => rm(temp, { recursive: true, force: true }));

test('puts kube-actions on PATH; a later step gates on a Rollout with it', async () => {
  const pathFile = join(temp, 'path');
  await writeFile(pathFile, '');
  const result = await runAction('setup', {}, { RUNNER_TEMP: temp, GITHUB_PATH: pathFile });
  expect(result.exitCode).toBe(0);
  const dir = (await readFile(pathFile, 'utf8')).trim();
  expect(result.outputs.path).toBe(join(dir, 'kube-actions'));
  expect(result.outputs.version).toBe(pkg.version);

  // A later step: PATH now holds the directory, and nothing else of this checkout is needed.
  const step = (args: string[]) =>
    run('kube-actions', args, {
      env: { PATH: `${dir}:/usr/bin:/bin`, KUBECONFIG: process.env.KUBECONFIG! },
    });
  expect((await step(['version'])).stdout).toContain(pkg.version);
  await new KubeClient(ns.kc).create(ROLLOUT, {
    apiVersion: ROLLOUT.apiVersion,
    kind: 'Rollout',
    metadata: { name: 'web', namespace: ns.name },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'x' }] } },
    },
  } as never);
  // No controller runs for this namespace: the gate times out and fails the step, as it should.
  const gate = await step(['rollout', 'status', 'web', '-n', ns.name, '--timeout', '2s']).then(
    () => 0,
    (err: { code?: number; stdout?: string }) => err.code,
  );
  expect(gate).toBe(1);
});
