// Starts one real control plane for the whole integration run and hands its kubeconfig to the
// test workers through the environment. KUBE_ACTIONS_TEST_KUBECONFIG runs the same tests against
// an existing cluster instead (kind, minikube, a cloud cluster).
//
// Where the machine can run one (realNodeUnavailableReason), the control plane also gets a real
// kubelet node (node.ts), announced to the workers as KUBE_ACTIONS_REAL_NODE (its name),
// KUBE_ACTIONS_REAL_NODE_GATEWAY and KUBE_ACTIONS_REAL_NODE_DIR; otherwise
// KUBE_ACTIONS_REAL_NODE_UNAVAILABLE says why, and the tests that need it skip with that reason
// (testing.ts realNode). KUBE_ACTIONS_NO_REAL_NODE=1 leaves it out.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBinaries, LocalControlPlane } from './controlplane.ts';
import { realNodeUnavailableReason } from './node.ts';

export default async function globalSetup(): Promise<void> {
  // helm and kustomize are found on PATH, as on a GitHub runner; these are the pinned builds.
  const binDir = await ensureBinaries();
  process.env.PATH = `${binDir}:${process.env.PATH}`;
  process.env.KUBE_ACTIONS_BIN_DIR = binDir;
  const external = process.env.KUBE_ACTIONS_TEST_KUBECONFIG;
  if (external) {
    process.env.KUBECONFIG = external;
    process.env.KUBE_ACTIONS_REAL_NODE_UNAVAILABLE =
      'the tests run against an existing cluster (KUBE_ACTIONS_TEST_KUBECONFIG), not the harness';
    return;
  }
  const unavailable =
    process.env.KUBE_ACTIONS_NO_REAL_NODE === '1'
      ? 'left out by KUBE_ACTIONS_NO_REAL_NODE=1'
      : await realNodeUnavailableReason();
  const cluster = await LocalControlPlane.start({
    dir: join(tmpdir(), `kube-actions-test-${process.pid}`),
    attached: true,
    binDir,
    realNode: unavailable === undefined,
  });
  process.env.KUBECONFIG = cluster.kubeconfig;
  process.env.KUBE_ACTIONS_TEST_CLUSTER_DIR = cluster.state.dir;
  const node = cluster.state.realNode;
  if (node) {
    process.env.KUBE_ACTIONS_REAL_NODE = node.name;
    process.env.KUBE_ACTIONS_REAL_NODE_GATEWAY = node.gateway;
    process.env.KUBE_ACTIONS_REAL_NODE_DIR = node.dir;
    delete process.env.KUBE_ACTIONS_REAL_NODE_UNAVAILABLE;
  } else {
    process.env.KUBE_ACTIONS_REAL_NODE_UNAVAILABLE = unavailable ?? 'not started';
  }
  (globalThis as { __kubeActionsCluster?: LocalControlPlane }).__kubeActionsCluster = cluster;
  const nodeLine = node
    ? `, real node ${node.name} (gateway ${node.gateway}) in ${(node.startedInMs / 1000).toFixed(1)}s`
    : `; no real node: ${unavailable}`;
  console.log(
    `\ntest control plane ${cluster.state.kubernetesVersion} up in ${(cluster.state.startedInMs / 1000).toFixed(1)}s${nodeLine}`,
  );
}
