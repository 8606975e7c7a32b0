// `make demo`: the kube-actions story on a real cluster, end to end as far as it is built.
//
//   1. A cluster: the one in $KUBECONFIG when given, else the local control plane (kube-apiserver,
//      etcd, controller-manager, scheduler, kwok nodes), started detached and left running.
//   2. The example GitOps repo's staging environment (gitops/apps/guestbook/overlays/staging),
//      rendered with the pinned kustomize and server-side applied.
//   3. Wait until its Deployment is available, then show what runs and how to look around.
//
// Later stages (the render/promote actions, the Application reconciler, rollouts) extend this.
import * as k8s from '@kubernetes/client-node';
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { ensureBinaries, LocalControlPlane } from '../test/cluster/controlplane.ts';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');
const demoDir = process.env.DEMO_DIR ?? join(root, '.test-cluster', 'demo');
const step = (n: number, text: string) => console.log(`\n\x1b[1m[${n}/3] ${text}\x1b[0m`);

async function cluster(): Promise<{ kc: k8s.KubeConfig; how: string }> {
  const kc = new k8s.KubeConfig();
  if (process.env.KUBECONFIG) {
    kc.loadFromDefault();
    console.log(`using the cluster in KUBECONFIG (context ${kc.getCurrentContext()})`);
    return { kc, how: `KUBECONFIG=${process.env.KUBECONFIG}` };
  }
  const existing = await LocalControlPlane.load(demoDir).catch(() => undefined);
  const local =
    existing?.running() === true
      ? existing
      : await LocalControlPlane.start({ dir: demoDir, attached: false, nodes: 3 });
  const s = local.state;
  console.log(
    existing === local
      ? `reusing the local control plane ${s.kubernetesVersion} at ${s.server}`
      : `local control plane ${s.kubernetesVersion} started at ${s.server} in ${(s.startedInMs / 1000).toFixed(1)}s`,
  );
  kc.loadFromFile(s.kubeconfig);
  return { kc, how: `export KUBECONFIG=${s.kubeconfig}` };
}

async function main(): Promise<void> {
  step(1, 'cluster');
  const { kc, how } = await cluster();
  const version = await kc.makeApiClient(k8s.VersionApi).getCode();
  const nodes = await kc.makeApiClient(k8s.CoreV1Api).listNode();
  console.log(`Kubernetes ${version.gitVersion}, ${nodes.items.length} nodes`);

  step(2, 'render gitops/apps/guestbook/overlays/staging and server-side apply it');
  const kustomize = join(await ensureBinaries(), 'kustomize');
  const overlay = join(root, 'gitops', 'apps', 'guestbook', 'overlays', 'staging');
  const { stdout } = await run(kustomize, ['build', overlay]);
  const objects = parseAllDocuments(stdout).map((d) => d.toJS() as k8s.KubernetesObject);
  const namespace = objects.find((o) => o.metadata?.namespace)?.metadata?.namespace ?? 'default';
  const api = k8s.KubernetesObjectApi.makeApiClient(kc);
  const apply = (o: k8s.KubernetesObject) =>
    api.patch(o, undefined, undefined, 'kube-actions-demo', true, k8s.PatchStrategy.ServerSideApply);
  await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } });
  for (const o of objects) {
    await apply(o);
    console.log(`  applied ${o.kind}/${o.metadata?.name} (namespace ${namespace})`);
  }

  step(3, 'wait for the Deployment to become available');
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const deadline = Date.now() + 120_000;
  for (;;) {
    const d = await apps.readNamespacedDeployment({ name: 'guestbook', namespace });
    const want = d.spec?.replicas ?? 1;
    if (
      (d.status?.availableReplicas ?? 0) >= want &&
      d.status?.observedGeneration === d.metadata?.generation
    ) {
      console.log(`  guestbook: ${d.status?.availableReplicas}/${want} available`);
      break;
    }
    if (Date.now() > deadline)
      throw new Error(`guestbook not available after 120s: ${JSON.stringify(d.status)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  const pods = await kc.makeApiClient(k8s.CoreV1Api).listNamespacedPod({ namespace });
  for (const p of pods.items) {
    console.log(`  pod ${p.metadata?.name} ${p.status?.phase} on ${p.spec?.nodeName}`);
  }

  console.log(`\nDone. Look around with:\n  ${how}\n  kubectl get all -n ${namespace}`);
  if (!process.env.KUBECONFIG) console.log('Stop the local control plane with:\n  make demo-down');
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
