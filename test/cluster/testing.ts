// Helpers for integration tests: a client for the run's cluster and a namespace per test file.
import { afterAll, beforeAll } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';

/** A KubeConfig for the cluster the global setup started (or KUBE_ACTIONS_TEST_KUBECONFIG). */
export function testKubeConfig(): k8s.KubeConfig {
  const path = process.env.KUBECONFIG;
  if (!path)
    throw new Error(
      'KUBECONFIG is not set: run integration tests through jest (globalSetup starts the cluster)',
    );
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(path);
  return kc;
}

export interface TestNamespace {
  /** Set once beforeAll has run. */
  name: string;
  kc: k8s.KubeConfig;
}

/**
 * Registers beforeAll/afterAll hooks that create a fresh namespace for this test file and delete
 * it afterwards, so files can run in parallel against one cluster without seeing each other.
 */
export function useTestNamespace(prefix: string): TestNamespace {
  const ns: TestNamespace = { name: '', kc: testKubeConfig() };
  beforeAll(async () => {
    ns.name = `${prefix}-${randomBytes(3).toString('hex')}`.toLowerCase().slice(0, 63);
    await ns.kc.makeApiClient(k8s.CoreV1Api).createNamespace({
      body: { metadata: { name: ns.name, labels: { 'kube-actions.dev/test': 'true' } } },
    });
  });
  afterAll(async () => {
    if (!ns.name) return;
    // Background deletion: the namespace controller finishes it; tests do not wait for that.
    await ns.kc
      .makeApiClient(k8s.CoreV1Api)
      .deleteNamespace({ name: ns.name })
      .catch(() => undefined);
  });
  return ns;
}

/** Polls `check` until it returns a value other than undefined, or fails with `what` after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
