// Helpers for integration tests: a client for the run's cluster, a namespace per test file, and
// the run's real kubelet node (when the machine can run one).
import { afterAll, beforeAll, describe, test } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { REAL_NODE_TAINT, writeRegistryHosts } from './node.ts';

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

/** The run's real node (test/cluster/node.ts), as the global setup announced it. */
export interface RealNodeInfo {
  name: string;
  /** The host's address on the node's link: servers that pods must reach listen here too. */
  gateway: string;
  /** The node's directory (containerd's registry hosts live under it). */
  dir: string;
  /** What a pod needs to run there: the node's taint tolerated, and this node selected. */
  tolerations: k8s.V1Toleration[];
  nodeSelector: Record<string, string>;
  /**
   * Lets the node pull images named `host/...` (e.g. an OciRegistry's `127.0.0.1:PORT`) over plain
   * HTTP from `endpoint` (the registry's `gatewayHost`; `host` by default).
   */
  addRegistry(host: string, endpoint?: string): Promise<void>;
}

/** The run's real node, or why there is none (`{ unavailable }`: skip with that reason). */
export function realNode(): RealNodeInfo | { unavailable: string } {
  const name = process.env.KUBE_ACTIONS_REAL_NODE;
  const gateway = process.env.KUBE_ACTIONS_REAL_NODE_GATEWAY;
  const dir = process.env.KUBE_ACTIONS_REAL_NODE_DIR;
  if (!name || !gateway || !dir) {
    return {
      unavailable:
        process.env.KUBE_ACTIONS_REAL_NODE_UNAVAILABLE ??
        'no real node was started (run the integration tests through jest: its global setup starts it)',
    };
  }
  return {
    name,
    gateway,
    dir,
    tolerations: [{ ...REAL_NODE_TAINT, operator: 'Equal' }],
    nodeSelector: { 'kubernetes.io/hostname': name },
    addRegistry: async (host, endpoint) => {
      await writeRegistryHosts(dir, host, endpoint);
    },
  };
}

/**
 * describe() for tests that need real containers: runs `fn` with the run's real node, or, where
 * the machine cannot run one, skips with the reason in the test's title (and on the console).
 */
export function describeOnRealNode(title: string, fn: (node: RealNodeInfo) => void): void {
  const node = realNode();
  if ('unavailable' in node) {
    console.warn(`skipping "${title}": no real node: ${node.unavailable}`);
    describe(title, () => {
      test.skip(`skipped: no real node: ${node.unavailable}`, () => undefined);
    });
    return;
  }
  describe(title, () => fn(node));
}
