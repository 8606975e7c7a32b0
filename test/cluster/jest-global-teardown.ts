import type { LocalControlPlane } from './controlplane.ts';

export default async function globalTeardown(): Promise<void> {
  const cluster = (globalThis as { __kubeActionsCluster?: LocalControlPlane }).__kubeActionsCluster;
  // Keep the logs of a failed run for a look: KUBE_ACTIONS_KEEP_CLUSTER_DIR=1 (the real node's
  // logs are in the cluster's logs/real-node/; the node itself is always removed completely).
  await cluster?.stop({ keepDir: process.env.KUBE_ACTIONS_KEEP_CLUSTER_DIR === '1' });
}
