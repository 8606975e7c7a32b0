// `make demo`: the kube-actions story on a real cluster, end to end as far as it is built.
//
//   1. A cluster: the one in $KUBECONFIG when given, else the local control plane (kube-apiserver,
//      etcd, controller-manager, scheduler, kwok nodes), started detached and left running.
//   2. A GitOps repository: this checkout's gitops/ directory, pushed to a git server (git's own
//      http-backend, token auth) on loopback; its credentials go in an Argo CD-style Secret.
//   3. The controller (`kube-actions controller`, the bundled CLI) and the Application CRD; an
//      Application for gitops/apps/guestbook/overlays/staging, synced automatically.
//   4. A promotion (`kube-actions promote`) bumps the image in Git; a signed push webhook makes the
//      controller apply it at once.
//   5. Drift (someone scales the Deployment by hand) is healed.
//   6. Progressive delivery: checkout in production is a canary Rollout; a promotion pauses it at
//      50% (the Application shows Suspended) until `kube-actions rollout promote` lets it finish.
import * as k8s from '@kubernetes/client-node';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { KubeClient, PatchType } from '../src/core/kube/client.ts';
import { APPLICATION, type Application } from '../src/controller/sync/types.ts';
import { signature } from '../src/controller/sync/webhook.ts';
import { ensureBinaries, LocalControlPlane } from '../test/cluster/controlplane.ts';
import { installCRDs } from '../test/cluster/crds.ts';
import { GitServer } from '../test/cluster/git-server.ts';
import { freePort } from '../test/cluster/ports.ts';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');
const demoDir = process.env.DEMO_DIR ?? join(root, '.test-cluster', 'demo');
const CLI = join(root, 'dist', 'cli', 'index.js');
const STEPS = 6;
const step = (n: number, text: string) => console.log(`\n\x1b[1m[${n}/${STEPS}] ${text}\x1b[0m`);
const TOKEN = `demo-${Math.random().toString(36).slice(2)}`;
const WEBHOOK_SECRET = `demo-webhook-${Math.random().toString(36).slice(2)}`;
const CONTROLLER_NS = 'kube-actions';
const APP = 'guestbook-staging';
const TARGET_NS = 'guestbook-staging';
const KUSTOMIZATION = 'apps/guestbook/overlays/staging/kustomization.yaml';

async function filesUnder(dir: string, base = dir): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const entry of await readdir(dir)) {
    const path = join(dir, entry);
    if ((await stat(path)).isDirectory()) Object.assign(files, await filesUnder(path, base));
    else files[relative(base, path)] = await readFile(path, 'utf8');
  }
  return files;
}

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  return run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }).then((r) => r.stdout);
}

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
  // helm and kustomize for the controller's renders: the pinned builds.
  process.env.PATH = `${await ensureBinaries()}:${process.env.PATH}`;
  const client = new KubeClient(kc);
  let git: GitServer | undefined;
  let controller: ChildProcess | undefined;
  try {
    step(2, 'a GitOps repository on a local git server (token auth)');
    git = await GitServer.start({ auth: { username: 'x-access-token', password: TOKEN } });
    await git.createRepo('acme/gitops', await filesUnder(join(root, 'gitops')));
    const repoURL = git.url('acme/gitops');
    console.log(`  ${repoURL} holds gitops/ at ${(await git.revParse('acme/gitops')).slice(0, 12)}`);

    step(3, 'the controller, the Application CRD, and an Application for the staging overlay');
    await installCRDs(kc);
    await client
      .create(
        { apiVersion: 'v1', resource: 'namespaces', namespaced: false },
        { metadata: { name: CONTROLLER_NS } },
      )
      .catch(() => undefined);
    const secretRef = { apiVersion: 'v1', resource: 'secrets' };
    await client.patch(
      secretRef,
      CONTROLLER_NS,
      'demo-gitops-repo',
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name: 'demo-gitops-repo',
          namespace: CONTROLLER_NS,
          labels: { 'argocd.argoproj.io/secret-type': 'repository' },
        },
        stringData: { url: repoURL, username: 'x-access-token', password: TOKEN },
      }),
      PatchType.apply,
      { fieldManager: 'kube-actions-demo', force: true },
    );
    const webhookPort = await freePort();
    controller = spawn(
      process.execPath,
      [
        CLI,
        'controller',
        '--controller-namespace',
        CONTROLLER_NS,
        '--metrics-port',
        String(await freePort()),
        '--webhook-port',
        String(webhookPort),
        '--log-level',
        'warn',
        '--lease-duration',
        '4s',
        '--renew-deadline',
        '3s',
        '--retry-period',
        '1s',
      ],
      {
        env: { ...process.env, KUBECONFIG: kubeconfigPath(how), KUBE_ACTIONS_WEBHOOK_SECRET: WEBHOOK_SECRET },
        stdio: ['ignore', 'inherit', 'inherit'],
      },
    );
    console.log(`  kube-actions controller running (pid ${controller.pid}), webhook on :${webhookPort}`);
    const appBody = {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Application',
      metadata: { name: APP, namespace: CONTROLLER_NS },
      spec: {
        project: 'default',
        source: { repoURL, targetRevision: 'main', path: 'apps/guestbook/overlays/staging' },
        destination: { server: 'https://kubernetes.default.svc', namespace: TARGET_NS },
        syncPolicy: { automated: { prune: true, selfHeal: true }, syncOptions: ['CreateNamespace=true'] },
      },
    };
    await client.patch(APPLICATION, CONTROLLER_NS, APP, JSON.stringify(appBody), PatchType.apply, {
      fieldManager: 'kube-actions-demo',
      force: true,
    });
    const first = await git.revParse('acme/gitops');
    const started = Date.now();
    await until('the Application to be Synced and Healthy', async () => {
      const app = await client.get<Application & { metadata: object }>(APPLICATION, CONTROLLER_NS, APP);
      return app.status?.sync?.status === 'Synced' &&
        app.status.sync.revision === first &&
        app.status.health?.status === 'Healthy'
        ? app
        : undefined;
    });
    console.log(`  Synced and Healthy in ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
    console.log(
      indent(await cli(['app', 'get', APP, '-n', CONTROLLER_NS], { KUBECONFIG: kubeconfigPath(how) })),
    );

    step(4, 'promote a new image through Git; the push webhook makes it land at once');
    const promoted = await cli(
      [
        'promote',
        '--repo',
        repoURL,
        '--kustomization',
        KUSTOMIZATION,
        '--image',
        'ghcr.io/kube-actions/guestbook:1.2.0',
        '-m',
        'guestbook: 1.2.0 to staging',
      ],
      { GIT_TOKEN: TOKEN },
    );
    console.log(`  ${promoted.trim()}`);
    const body = JSON.stringify({
      ref: 'refs/heads/main',
      repository: { clone_url: repoURL, default_branch: 'main' },
    });
    const sent = Date.now();
    const res = await fetch(`http://127.0.0.1:${webhookPort}/api/webhook`, {
      method: 'POST',
      body,
      headers: {
        'X-GitHub-Event': 'push',
        'X-Hub-Signature-256': signature(WEBHOOK_SECRET, Buffer.from(body)),
      },
    });
    console.log(`  webhook: ${res.status} ${((await res.json()) as { message: string }).message}`);
    const deployments = { apiVersion: 'apps/v1', resource: 'deployments' };
    type Deployment = {
      metadata?: object;
      spec?: { replicas?: number; template?: { spec?: { containers?: { image?: string }[] } } };
      status?: { availableReplicas?: number };
    };
    await until('the new image in the cluster', async () => {
      const d = await client.get<Deployment>(deployments, TARGET_NS, 'guestbook');
      return d.spec?.template?.spec?.containers?.[0]?.image === 'ghcr.io/kube-actions/guestbook:1.2.0'
        ? true
        : undefined;
    });
    console.log(
      `  the Deployment runs ghcr.io/kube-actions/guestbook:1.2.0, ${Date.now() - sent} ms after the webhook`,
    );

    step(5, 'drift: scale the Deployment by hand; the controller heals it');
    await client.patch(deployments, TARGET_NS, 'guestbook', { spec: { replicas: 5 } }, PatchType.merge);
    console.log('  kubectl scale deployment/guestbook --replicas=5 (as someone might)');
    const healed = Date.now();
    await until('the replicas back to 2', async () =>
      (await client.get<Deployment>(deployments, TARGET_NS, 'guestbook')).spec?.replicas === 2
        ? true
        : undefined,
    );
    console.log(`  back to 2 replicas, as Git says, ${Date.now() - healed} ms later\n`);

    step(6, 'progressive delivery: a canary Rollout for checkout in production');
    const kube = { KUBECONFIG: kubeconfigPath(how) };
    await client.patch(
      APPLICATION,
      CONTROLLER_NS,
      'checkout-production',
      JSON.stringify({
        ...appBody,
        metadata: { name: 'checkout-production', namespace: CONTROLLER_NS },
        spec: {
          ...appBody.spec,
          source: { repoURL, targetRevision: 'main', path: 'apps/checkout/overlays/production' },
          destination: { server: 'https://kubernetes.default.svc', namespace: 'checkout-production' },
        },
      }),
      PatchType.apply,
      { fieldManager: 'kube-actions-demo', force: true },
    );
    const appState = async () => {
      const app = await client.get<Application & { metadata: object }>(
        APPLICATION,
        CONTROLLER_NS,
        'checkout-production',
      );
      return `${app.status?.sync?.status ?? '?'}/${app.status?.health?.status ?? '?'}`;
    };
    await until('checkout Synced/Healthy', async () =>
      (await appState()) === 'Synced/Healthy' ? true : undefined,
    );
    console.log('  checkout 1.0.0 runs as a Rollout: Synced/Healthy');
    console.log(
      `  ${(await cli(['promote', '--repo', repoURL, '--kustomization', 'apps/checkout/overlays/production/kustomization.yaml', '--image', 'ghcr.io/kube-actions/checkout:1.1.0', '-m', 'checkout: 1.1.0 to production'], { GIT_TOKEN: TOKEN })).trim()}`,
    );
    await fetch(`http://127.0.0.1:${webhookPort}/api/webhook`, {
      method: 'POST',
      body,
      headers: {
        'X-GitHub-Event': 'push',
        'X-Hub-Signature-256': signature(WEBHOOK_SECRET, Buffer.from(body)),
      },
    });
    await until('the canary to pause at 50%', async () =>
      (await appState()) === 'Synced/Suspended' ? true : undefined,
    );
    console.log(`  the canary paused at 50%; the Application is ${await appState()}\n`);
    console.log(indent(await cli(['rollout', 'get', 'checkout', '-n', 'checkout-production'], kube)));
    console.log(
      `\n  ${(await cli(['rollout', 'promote', 'checkout', '-n', 'checkout-production'], kube)).trim()}`,
    );
    await until('checkout Healthy on 1.1.0', async () =>
      (await appState()) === 'Synced/Healthy' ? true : undefined,
    );
    console.log(
      `  ${(await cli(['rollout', 'status', 'checkout', '-n', 'checkout-production', '--timeout', '60s'], kube)).trim().split('\n').at(-1)}: checkout 1.1.0 is stable; the Application is ${await appState()}\n`,
    );
    console.log(indent(await cli(['app', 'list', '-n', CONTROLLER_NS], kube)));
  } finally {
    controller?.kill('SIGTERM');
    if (controller) await new Promise((r) => controller!.once('exit', r));
    await git?.stop();
    await client.close();
  }
  console.log(
    `Done. The controller and the git server have stopped; what they applied stays. Look around with:\n  ${how}\n  kubectl get applications,all -A`,
  );
  if (!process.env.KUBECONFIG) console.log('Stop the local control plane with:\n  make demo-down');
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}

function kubeconfigPath(how: string): string {
  return how.replace(/^(export )?KUBECONFIG=/, '');
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
