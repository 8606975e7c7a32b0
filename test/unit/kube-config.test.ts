import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfigError, loadKubeConfig } from '../../src/core/kube/config.ts';

let dir: string;
const kubeconfig = (contexts: string[]) =>
  [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    ...contexts.flatMap((c) => [`- name: ${c}`, '  cluster:', `    server: https://${c}.example:6443`]),
    'users: [{name: u, user: {token: t}}]',
    'contexts:',
    ...contexts.flatMap((c) => [`- name: ${c}`, '  context:', `    cluster: ${c}`, '    user: u']),
    `current-context: ${contexts[0]}`,
  ].join('\n');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubeconfig-'));
  await writeFile(join(dir, 'two'), kubeconfig(['staging', 'prod']));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('loadKubeConfig', () => {
  test('uses the current context of an explicit file', () => {
    const kc = loadKubeConfig({ kubeconfig: join(dir, 'two') });
    expect(kc.getCurrentCluster()?.server).toBe('https://staging.example:6443');
  });

  test('switches to a named context', () => {
    const kc = loadKubeConfig({ kubeconfig: join(dir, 'two'), context: 'prod' });
    expect(kc.getCurrentCluster()?.server).toBe('https://prod.example:6443');
  });

  test('an unknown context is a clear error', () => {
    expect(() => loadKubeConfig({ kubeconfig: join(dir, 'two'), context: 'nope' })).toThrow(
      new KubeConfigError('context "nope" not found in kubeconfig'),
    );
  });

  test('a missing file names the file', () => {
    expect(() => loadKubeConfig({ kubeconfig: join(dir, 'missing') })).toThrow(
      /cannot load kubeconfig .*missing/,
    );
  });
});
