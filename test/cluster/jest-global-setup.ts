// Starts one real control plane for the whole integration run and hands its kubeconfig to the
// test workers through the environment. KUBE_ACTIONS_TEST_KUBECONFIG runs the same tests against
// an existing cluster instead (kind, minikube, a cloud cluster).
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBinaries, LocalControlPlane } from './controlplane.ts';

export default async function globalSetup(): Promise<void> {
  // helm and kustomize are found on PATH, as on a GitHub runner; these are the pinned builds.
  const binDir = await ensureBinaries();
  process.env.PATH = `${binDir}:${process.env.PATH}`;
  process.env.KUBE_ACTIONS_BIN_DIR = binDir;
  const external = process.env.KUBE_ACTIONS_TEST_KUBECONFIG;
  if (external) {
    process.env.KUBECONFIG = external;
    return;
  }
  const cluster = await LocalControlPlane.start({
    dir: join(tmpdir(), `kube-actions-test-${process.pid}`),
    attached: true,
    binDir,
  });
  process.env.KUBECONFIG = cluster.kubeconfig;
  process.env.KUBE_ACTIONS_TEST_CLUSTER_DIR = cluster.state.dir;
  (globalThis as { __kubeActionsCluster?: LocalControlPlane }).__kubeActionsCluster = cluster;
  console.log(
    `\ntest control plane ${cluster.state.kubernetesVersion} up in ${(cluster.state.startedInMs / 1000).toFixed(1)}s`,
  );
}
