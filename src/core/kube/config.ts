// Where a kube-actions process finds its cluster: an explicit kubeconfig path, else $KUBECONFIG,
// else ~/.kube/config, else the in-cluster service account; the same order as kubectl.
import * as k8s from './client-node.ts';

export class KubeConfigError extends Error {
  override name = 'KubeConfigError';
}

export function loadKubeConfig(options: { kubeconfig?: string; context?: string } = {}): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  try {
    if (options.kubeconfig) kc.loadFromFile(options.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    const source = options.kubeconfig ?? process.env.KUBECONFIG ?? '~/.kube/config';
    throw new KubeConfigError(`cannot load kubeconfig ${source}: ${(err as Error).message}`);
  }
  if (options.context) {
    if (!kc.getContexts().some((c) => c.name === options.context)) {
      throw new KubeConfigError(`context "${options.context}" not found in kubeconfig`);
    }
    kc.setCurrentContext(options.context);
  }
  if (!kc.getCurrentCluster()) {
    throw new KubeConfigError(
      'no cluster configured: set KUBECONFIG, pass --kubeconfig, or run in a pod with a service account',
    );
  }
  return kc;
}
