// `make demo`: the kube-actions story on a real cluster, end to end.
//
//   1. A cluster: the one in $KUBECONFIG when given, else the local control plane (kube-apiserver,
//      etcd, controller-manager, scheduler, kwok nodes and, where this machine can run one, a real
//      kubelet node), started detached and left running.
//   2. Images: the controller's (as `make image` builds it) and an app's v1 and v2 (by our build
//      action), pushed to a registry the cluster pulls from.
//   3. A GitOps repository: this checkout's gitops/ directory on a git server (git's own
//      http-backend, token auth) that the cluster's pods reach; its credentials go in an Argo
//      CD-style Secret.
//   4. The controller installed with the Helm chart from its image (two replicas electing a leader,
//      PodSecurity `restricted`), and an Application for gitops/apps/guestbook/overlays/staging.
//   5. A promotion (`kube-actions promote`) bumps the image in Git; a signed push webhook sent to the
//      controller's Service makes it land at once.
//   6. Drift (someone scales the Deployment by hand) is healed.
//   7. Progressive delivery with real traffic: `hello` v1 serves; v2 is promoted through Git and
//      rolls out as a canary (25%, 50%, then a pause) while a live line shows which version answers
//      requests sent through its Service; `kube-actions rollout promote` lets it finish.
//
// Where the controller cannot run in the cluster (no real node here, or a $KUBECONFIG cluster
// without DEMO_REGISTRY and DEMO_HOST_ADDRESS), the demo says why and runs the controller as a
// process on this machine instead, with the `checkout` canary in place of the live traffic.
import * as k8s from '@kubernetes/client-node';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { KubeClient, PatchType } from '../src/core/kube/client.ts';
import { ROLLOUT, type Rollout } from '../src/controller/rollout/types.ts';
import { APPLICATION, REFRESH_ANNOTATION, type Application } from '../src/controller/sync/types.ts';
import { installChart, pushControllerImage } from '../test/cluster/controller-chart.ts';
import { ensureBinaries, LocalControlPlane } from '../test/cluster/controlplane.ts';
import { installCRDs } from '../test/cluster/crds.ts';
import { GitServer } from '../test/cluster/git-server.ts';
import { realNodeUnavailableReason, writeRegistryHosts } from '../test/cluster/node.ts';
import { freePort } from '../test/cluster/ports.ts';
import { pushWebhook } from '../test/cluster/push-webhook.ts';
import { OciRegistry } from '../test/cluster/registry.ts';
import { buildAppImage } from '../test/e2e/app-image.ts';
import { CONTROLLER_ENV, CONTROLLER_NODE_FLAGS } from '../src/controller/node-flags.ts';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');
const demoDir = process.env.DEMO_DIR ?? join(root, '.test-cluster', 'demo');
const CLI = join(root, 'dist', 'cli', 'index.js');
const STEPS = 7;
const step = (n: number, text: string) => console.log(`\n\x1b[1m[${n}/${STEPS}] ${text}\x1b[0m`);
const TOKEN = `demo-${randomBytes(8).toString('hex')}`;
const WEBHOOK_SECRET = `demo-webhook-${randomBytes(8).toString('hex')}`;
const CONTROLLER_NS = 'kube-actions';
const RELEASE = 'kube-actions';
const APP = 'guestbook-staging';
const TARGET_NS = 'guestbook-staging';
const KUSTOMIZATION = 'apps/guestbook/overlays/staging/kustomization.yaml';
const FIELD_MANAGER = { fieldManager: 'kube-actions-demo', force: true };

/** Where the controller runs, and what the cluster's pods reach. */
type Placement =
  | {
      inCluster: true;
      /** The address pods reach this machine at (the git server listens there). */
      hostAddress: string;
      /** Registry host the images are named by, and how the cluster is told to pull from it. */
      registry: { host: string; credentials(): { username: string; password: string } | undefined };
      /** Reaches a Service from this machine: directly on the local cluster, else via the apiserver. */
      direct: boolean;
      /** The real node's directory (local cluster): its containerd is pointed at the registry. */
      nodeDir?: string;
      /** The hello app's overlay for this cluster. */
      overlay: 'local' | 'cluster';
      stop(): Promise<void>;
    }
  | { inCluster: false; why: string };

async function filesUnder(dir: string, base = dir): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const entry of await readdir(dir)) {
    const path = join(dir, entry);
    if ((await stat(path)).isDirectory()) Object.assign(files, await filesUnder(path, base));
    else files[relative(base, path)] = await readFile(path, 'utf8');
  }
  return files;
}

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 180_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  return run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }).then((r) => r.stdout);
}

interface Cluster {
  kc: k8s.KubeConfig;
  kubeconfig: string;
  how: string;
  placement: Placement;
}

async function cluster(): Promise<Cluster> {
  const kc = new k8s.KubeConfig();
  if (process.env.KUBECONFIG) {
    kc.loadFromDefault();
    console.log(`using the cluster in KUBECONFIG (context ${kc.getCurrentContext()})`);
    const registry = process.env.DEMO_REGISTRY;
    const hostAddress = process.env.DEMO_HOST_ADDRESS;
    const placement: Placement =
      registry && hostAddress
        ? {
            inCluster: true,
            hostAddress,
            registry: { host: registry, credentials: () => undefined },
            direct: false,
            overlay: 'cluster',
            stop: () => Promise.resolve(),
          }
        : {
            inCluster: false,
            why: 'set DEMO_REGISTRY (a registry this machine pushes to and the cluster pulls from) and DEMO_HOST_ADDRESS (where its pods reach this machine) to run the controller in the cluster',
          };
    return { kc, kubeconfig: process.env.KUBECONFIG, how: `KUBECONFIG=${process.env.KUBECONFIG}`, placement };
  }
  const unavailable =
    process.env.KUBE_ACTIONS_NO_REAL_NODE === '1'
      ? 'left out by KUBE_ACTIONS_NO_REAL_NODE=1'
      : await realNodeUnavailableReason();
  const existing = await LocalControlPlane.load(demoDir).catch(() => undefined);
  const local =
    existing?.running() === true
      ? existing
      : await LocalControlPlane.start({ dir: demoDir, attached: false, nodes: 3, realNode: !unavailable });
  const s = local.state;
  console.log(
    existing === local
      ? `reusing the local control plane ${s.kubernetesVersion} at ${s.server}`
      : `local control plane ${s.kubernetesVersion} started at ${s.server} in ${(s.startedInMs / 1000).toFixed(1)}s`,
  );
  kc.loadFromFile(s.kubeconfig);
  const how = `export KUBECONFIG=${s.kubeconfig}`;
  const node = s.realNode;
  if (!node) {
    const why = unavailable
      ? `this machine cannot run a real node: ${unavailable}`
      : 'the running local control plane has no real node (`make demo-down`, then `make demo` again)';
    return { kc, kubeconfig: s.kubeconfig, how, placement: { inCluster: false, why } };
  }
  console.log(`real node ${node.name}: pods run real containers there (the kwok nodes simulate theirs)`);
  const registry = await OciRegistry.start({ gateway: node.gateway });
  await writeRegistryHosts(node.dir, registry.host, registry.gatewayHost);
  return {
    kc,
    kubeconfig: s.kubeconfig,
    how,
    placement: {
      inCluster: true,
      hostAddress: node.gateway,
      registry,
      direct: true,
      nodeDir: node.dir,
      overlay: 'local',
      stop: () => registry.stop(),
    },
  };
}

/** One HTTP request on a new connection (a kept-alive one would stay with one pod). */
function httpRequest(
  url: string,
  method: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolveAnswer) => {
    const req = request(url, { method, headers, agent: false, timeout: 5000 }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolveAnswer({ status: res.statusCode ?? 0, body: text.trim() }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolveAnswer({ status: 0, body: '' }));
    req.end(body);
  });
}

async function main(): Promise<void> {
  step(1, 'cluster');
  const { kc, kubeconfig, how, placement } = await cluster();
  const version = await kc.makeApiClient(k8s.VersionApi).getCode();
  const nodes = await kc.makeApiClient(k8s.CoreV1Api).listNode();
  console.log(`Kubernetes ${version.gitVersion}, ${nodes.items.length} nodes`);
  // A cluster of this harness (a local control plane, here or given by KUBECONFIG): its only node
  // that runs containers is tainted, and the others are simulated; place the pods on it.
  if (
    placement.inCluster &&
    nodes.items.some((n) => n.metadata?.labels?.['kube-actions.dev/real-node'] === 'true')
  )
    placement.overlay = 'local';
  // helm and kustomize for renders and the chart: the pinned builds.
  process.env.PATH = `${await ensureBinaries()}:${process.env.PATH}`;
  const client = new KubeClient(kc);
  const kube = { KUBECONFIG: kubeconfig };
  let git: GitServer | undefined;
  let controller: ChildProcess | undefined;
  try {
    step(2, 'images: the controller and the hello app, built and pushed');
    let images: { controller: string; v1: string; v2: string } | undefined;
    if (placement.inCluster) {
      const started = Date.now();
      images = {
        controller: await pushControllerImage(`${placement.registry.host}/kube-actions/kube-actions`),
        v1: await buildAppImage(placement.registry, 'v1', 'demo/hello'),
        v2: await buildAppImage(placement.registry, 'v2', 'demo/hello'),
      };
      console.log(`  ${images.controller}\n  ${images.v1} (hello v1)\n  ${images.v2} (hello v2)`);
      console.log(`  built and pushed in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    } else {
      console.log(`  skipped: the controller runs as a process here, because ${placement.why}`);
    }

    step(3, 'a GitOps repository on a local git server (token auth)');
    git = await GitServer.start({
      auth: { username: 'x-access-token', password: TOKEN },
      ...(placement.inCluster ? { gateway: placement.hostAddress } : {}),
    });
    await git.createRepo('acme/gitops', await filesUnder(join(root, 'gitops')));
    // The URL the controller clones: the one pods reach when it runs in the cluster.
    const repoURL = placement.inCluster ? git.gatewayUrl('acme/gitops') : git.url('acme/gitops');
    // Promotions run here, on loopback.
    const pushURL = git.url('acme/gitops');
    console.log(`  ${repoURL} holds gitops/ at ${(await git.revParse('acme/gitops')).slice(0, 12)}`);

    step(
      4,
      placement.inCluster
        ? 'the controller from its image, installed by the Helm chart; an Application for the staging overlay'
        : 'the controller (as a process), the CRDs, and an Application for the staging overlay',
    );
    await installCRDs(kc);
    const namespaces = { apiVersion: 'v1', resource: 'namespaces', namespaced: false };
    await client.patch(
      namespaces,
      '',
      CONTROLLER_NS,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: CONTROLLER_NS, labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } },
      }),
      PatchType.apply,
      FIELD_MANAGER,
    );
    const secrets = { apiVersion: 'v1', resource: 'secrets' };
    const applySecret = (name: string, labels: Record<string, string>, data: Record<string, string>) =>
      client.patch(
        secrets,
        CONTROLLER_NS,
        name,
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name, namespace: CONTROLLER_NS, labels },
          stringData: data,
        }),
        PatchType.apply,
        FIELD_MANAGER,
      );
    await applySecret(
      'demo-gitops-repo',
      { 'argocd.argoproj.io/secret-type': 'repository' },
      { url: repoURL, username: 'x-access-token', password: TOKEN },
    );
    let sendWebhook: () => Promise<string>;
    if (placement.inCluster && images) {
      await applySecret('demo-webhook', {}, { secret: WEBHOOK_SECRET });
      await installChart({
        release: RELEASE,
        namespace: CONTROLLER_NS,
        kubeconfig,
        image: images.controller,
        skipCrds: true,
        values: {
          webhook: { existingSecret: 'demo-webhook' },
          // The controller reads the webhook secret at start: a new one (each run makes one) must
          // roll its pods, as a checksum annotation does for any chart whose Secret lives outside it.
          podAnnotations: {
            'kube-actions.dev/webhook-secret-sha256': createHash('sha256')
              .update(WEBHOOK_SECRET)
              .digest('hex'),
          },
          controller: { logLevel: 'warn' },
          ...(placement.overlay === 'local'
            ? {
                nodeSelector: { 'kube-actions.dev/real-node': 'true' },
                tolerations: [
                  {
                    key: 'kube-actions.dev/real-node',
                    operator: 'Equal',
                    value: 'true',
                    effect: 'NoSchedule',
                  },
                ],
              }
            : {}),
        },
      });
      const deployments = { apiVersion: 'apps/v1', resource: 'deployments' };
      // As `kubectl rollout status`: every replica of the new template ready, none of an old one left.
      await until('the controller rolled out', async () => {
        const d = await client.get<{
          metadata: { generation?: number };
          spec: { replicas?: number };
          status?: {
            observedGeneration?: number;
            replicas?: number;
            updatedReplicas?: number;
            readyReplicas?: number;
          };
        }>(deployments, CONTROLLER_NS, `${RELEASE}-controller`);
        const want = d.spec.replicas ?? 1;
        return (d.status?.observedGeneration ?? 0) >= (d.metadata.generation ?? 0) &&
          d.status?.updatedReplicas === want &&
          d.status.replicas === want &&
          d.status.readyReplicas === want
          ? true
          : undefined;
      });
      const lease = await until('a leader', async () => {
        const l = await client.get<{ spec: { holderIdentity?: string } }>(
          { apiVersion: 'coordination.k8s.io/v1', resource: 'leases' },
          CONTROLLER_NS,
          `${RELEASE}-controller`,
        );
        return l.spec.holderIdentity;
      });
      console.log(
        `  helm upgrade --install ${RELEASE} deploy/chart/kube-actions: 2 replicas ready, ${lease} leads`,
      );
      const service = await client.get<{ spec: { clusterIP: string } }>(
        { apiVersion: 'v1', resource: 'services' },
        CONTROLLER_NS,
        `${RELEASE}-controller`,
      );
      sendWebhook = async () => {
        const event = pushWebhook({ repoURL, secret: WEBHOOK_SECRET });
        const res = placement.direct
          ? await httpRequest(
              `http://${service.spec.clusterIP}/api/webhook`,
              'POST',
              event.body,
              event.headers,
            )
          : await client
              .request<{ message: string }>(
                'POST',
                `/api/v1/namespaces/${CONTROLLER_NS}/services/http:${RELEASE}-controller:webhook/proxy/api/webhook`,
                { body: event.body, contentType: 'application/json', headers: event.headers },
              )
              .then((r) => ({ status: 200, body: JSON.stringify(r) }));
        return `${res.status} ${res.body}`;
      };
    } else {
      const webhookPort = await freePort();
      controller = spawn(
        process.execPath,
        [
          ...CONTROLLER_NODE_FLAGS,
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
          env: { ...process.env, ...CONTROLLER_ENV, ...kube, KUBE_ACTIONS_WEBHOOK_SECRET: WEBHOOK_SECRET },
          stdio: ['ignore', 'inherit', 'inherit'],
        },
      );
      console.log(`  kube-actions controller running (pid ${controller.pid}), webhook on :${webhookPort}`);
      sendWebhook = async () => {
        const event = pushWebhook({ repoURL, secret: WEBHOOK_SECRET });
        const res = await httpRequest(
          `http://127.0.0.1:${webhookPort}/api/webhook`,
          'POST',
          event.body,
          event.headers,
        );
        return `${res.status} ${res.body}`;
      };
    }
    const application = (name: string, path: string, namespace: string) => ({
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Application',
      // A hard refresh: Git is asked now, not at the next poll (an earlier Application of the same
      // repository may have cached its revision before the latest promotion).
      metadata: { name, namespace: CONTROLLER_NS, annotations: { [REFRESH_ANNOTATION]: 'hard' } },
      spec: {
        project: 'default',
        source: { repoURL, targetRevision: 'main', path },
        destination: { server: 'https://kubernetes.default.svc', namespace },
        syncPolicy: { automated: { prune: true, selfHeal: true }, syncOptions: ['CreateNamespace=true'] },
      },
    });
    const applyApplication = (name: string, path: string, namespace: string) =>
      client.patch(
        APPLICATION,
        CONTROLLER_NS,
        name,
        JSON.stringify(application(name, path, namespace)),
        PatchType.apply,
        FIELD_MANAGER,
      );
    const appState = async (name: string) => {
      const app = await client.get<Application & { metadata: object }>(APPLICATION, CONTROLLER_NS, name);
      return `${app.status?.sync?.status ?? '?'}/${app.status?.health?.status ?? '?'}`;
    };
    const promote = async (kustomization: string, image: string, message: string) =>
      (
        await cli(
          ['promote', '--repo', pushURL, '--kustomization', kustomization, '--image', image, '-m', message],
          { GIT_TOKEN: TOKEN },
        )
      ).trim();
    // guestbook's images: in the cluster, the ones built above (a cluster with real nodes has to
    // pull them: ghcr.io/kube-actions/guestbook is a placeholder), else the placeholders, whose
    // pods only simulated nodes run.
    const guestbook = images
      ? {
          next: `ghcr.io/kube-actions/guestbook=${images.v2}`,
          nextImage: images.v2,
          version: 'v2',
        }
      : {
          next: 'ghcr.io/kube-actions/guestbook:1.2.0',
          nextImage: 'ghcr.io/kube-actions/guestbook:1.2.0',
          version: '1.2.0',
        };
    if (images)
      await promote(KUSTOMIZATION, `ghcr.io/kube-actions/guestbook=${images.v1}`, 'guestbook: v1 to staging');
    await applyApplication(APP, 'apps/guestbook/overlays/staging', TARGET_NS);
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
    console.log(indent(await cli(['app', 'get', APP, '-n', CONTROLLER_NS], kube)));

    step(5, 'promote a new image through Git; the push webhook makes it land at once');
    console.log(
      `  ${await promote(KUSTOMIZATION, guestbook.next, `guestbook: ${guestbook.version} to staging`)}`,
    );
    const sent = Date.now();
    console.log(`  webhook: ${await sendWebhook()}`);
    const deployments = { apiVersion: 'apps/v1', resource: 'deployments' };
    type Deployment = {
      metadata?: object;
      spec?: { replicas?: number; template?: { spec?: { containers?: { image?: string }[] } } };
    };
    await until('the new image in the cluster', async () => {
      const d = await client.get<Deployment>(deployments, TARGET_NS, 'guestbook');
      return d.spec?.template?.spec?.containers?.[0]?.image === guestbook.nextImage ? true : undefined;
    });
    console.log(`  the Deployment runs ${guestbook.nextImage}, ${Date.now() - sent} ms after the webhook`);

    step(6, 'drift: scale the Deployment by hand; the controller heals it');
    await client.patch(deployments, TARGET_NS, 'guestbook', { spec: { replicas: 5 } }, PatchType.merge);
    console.log('  kubectl scale deployment/guestbook --replicas=5 (as someone might)');
    const healed = Date.now();
    await until('the replicas back to 2', async () =>
      (await client.get<Deployment>(deployments, TARGET_NS, 'guestbook')).spec?.replicas === 2
        ? true
        : undefined,
    );
    console.log(`  back to 2 replicas, as Git says, ${Date.now() - healed} ms later\n`);

    if (placement.inCluster && images) {
      step(7, 'progressive delivery with real traffic: hello v1 -> v2 as a canary');
      // A Rollout left by an earlier run would turn this v1 into a canary of its own: start clean.
      await client.delete(APPLICATION, CONTROLLER_NS, 'hello').catch(() => undefined);
      await client.delete(ROLLOUT, 'hello', 'hello').catch(() => undefined);
      await until('no hello Rollout from an earlier run', () =>
        client.get(ROLLOUT, 'hello', 'hello').then(
          () => undefined,
          () => true,
        ),
      );
      const overlay = `apps/hello/overlays/${placement.overlay}`;
      const name = (image: string) => `ghcr.io/kube-actions/hello=${image}`;
      console.log(`  ${await promote(`${overlay}/kustomization.yaml`, name(images.v1), 'hello: v1')}`);
      await applyApplication('hello', overlay, 'hello');
      await until('hello v1 Synced/Healthy', async () =>
        (await appState('hello')) === 'Synced/Healthy' ? true : undefined,
      );
      const services = { apiVersion: 'v1', resource: 'services' };
      const ip = (await client.get<{ spec: { clusterIP: string } }>(services, 'hello', 'hello')).spec
        .clusterIP;
      const core = kc.makeApiClient(k8s.CoreV1Api);
      // Through the apiserver's Service proxy where this machine cannot reach ClusterIPs; it picks
      // an endpoint per request, as kube-proxy does per connection.
      const ask = placement.direct
        ? () => httpRequest(`http://${ip}/`, 'GET')
        : () =>
            core.connectGetNamespacedServiceProxy({ name: 'http:hello:80', namespace: 'hello' }).then(
              (text) => ({ status: 200, body: String(text).trim() }),
              () => ({ status: 0, body: '' }),
            );
      await until('every answer from v1', async () => {
        for (let i = 0; i < 10; i++) if ((await ask()).body !== 'v1') return undefined;
        return true;
      });
      console.log(
        `  hello v1 answers through its Service (${placement.direct ? ip : 'the apiserver proxy'})`,
      );
      console.log(`  ${await promote(`${overlay}/kustomization.yaml`, name(images.v2), 'hello: v2')}`);
      console.log(`  webhook: ${await sendWebhook()}`);
      const rollout = () => client.get<Rollout>(ROLLOUT, 'hello', 'hello');
      const live = liveShare(ask, async () => {
        const ro = await rollout();
        const steps = ro.spec.strategy?.canary?.steps ?? [];
        const index = Math.min(ro.status?.currentStepIndex ?? 0, steps.length);
        const at = steps[index] as { setWeight?: number; pause?: { duration?: string } } | undefined;
        const what = !at
          ? 'all steps done'
          : at.setWeight !== undefined
            ? `setWeight ${at.setWeight}`
            : at.pause
              ? `pause ${at.pause.duration ?? 'until promoted'}`
              : 'step';
        return `step ${index + 1 > steps.length ? steps.length : index + 1}/${steps.length} ${what}, ${ro.status?.phase ?? ''}`;
      });
      try {
        await until(
          'the canary to pause at 50%',
          async () => {
            const ro = await rollout();
            return ro.status?.currentStepIndex === 3 && (ro.status.pauseConditions?.length ?? 0) > 0
              ? true
              : undefined;
          },
          300_000,
        );
        await live.hold(4000);
        live.note(`  paused at 50%; the Application is ${await appState('hello')}; promoting by hand:`);
        live.note(`  ${(await cli(['rollout', 'promote', 'hello', '-n', 'hello'], kube)).trim()}`);
        await until('hello v2 stable', async () => {
          const ro = await rollout();
          return ro.status?.phase === 'Healthy' && ro.status.stableRS === ro.status.currentPodHash
            ? true
            : undefined;
        });
        await until('every answer from v2', async () => {
          for (let i = 0; i < 10; i++) if ((await ask()).body !== 'v2') return undefined;
          return true;
        });
        await live.hold(3000);
      } finally {
        await live.stop();
      }
      console.log(`  hello v2 is stable; the Application is ${await appState('hello')}\n`);
    } else {
      step(7, 'progressive delivery: a canary Rollout for checkout in production (simulated pods)');
      await applyApplication(
        'checkout-production',
        'apps/checkout/overlays/production',
        'checkout-production',
      );
      await until('checkout Synced/Healthy', async () =>
        (await appState('checkout-production')) === 'Synced/Healthy' ? true : undefined,
      );
      console.log('  checkout 1.0.0 runs as a Rollout: Synced/Healthy');
      console.log(
        `  ${await promote('apps/checkout/overlays/production/kustomization.yaml', 'ghcr.io/kube-actions/checkout:1.1.0', 'checkout: 1.1.0 to production')}`,
      );
      console.log(`  webhook: ${await sendWebhook()}`);
      await until('the canary to pause at 50%', async () =>
        (await appState('checkout-production')) === 'Synced/Suspended' ? true : undefined,
      );
      console.log(
        `  the canary paused at 50%; the Application is ${await appState('checkout-production')}\n`,
      );
      console.log(indent(await cli(['rollout', 'get', 'checkout', '-n', 'checkout-production'], kube)));
      console.log(
        `\n  ${(await cli(['rollout', 'promote', 'checkout', '-n', 'checkout-production'], kube)).trim()}`,
      );
      await until('checkout Healthy on 1.1.0', async () =>
        (await appState('checkout-production')) === 'Synced/Healthy' ? true : undefined,
      );
      console.log(
        `  ${(await cli(['rollout', 'status', 'checkout', '-n', 'checkout-production', '--timeout', '60s'], kube)).trim().split('\n').at(-1)}: checkout 1.1.0 is stable; the Application is ${await appState('checkout-production')}\n`,
      );
    }
    console.log(indent(await cli(['app', 'list', '-n', CONTROLLER_NS], kube)));
  } finally {
    controller?.kill('SIGTERM');
    if (controller) await new Promise((r) => controller!.once('exit', r));
    await git?.stop();
    if (placement.inCluster) await placement.stop();
    await client.close();
  }
  console.log(
    placement.inCluster
      ? `\nDone. The controller keeps running in the cluster (namespace ${CONTROLLER_NS}); the git server and registry have stopped, so its Applications will report that Git is unreachable. Look around with:\n  ${how}\n  kubectl get applications,rollouts,pods -A`
      : `\nDone. The controller and the git server have stopped; what they applied stays. Look around with:\n  ${how}\n  kubectl get applications,all -A`,
  );
  if (!process.env.KUBECONFIG) console.log('Stop the local control plane with:\n  make demo-down');
}

const SAMPLE = 40;
/** A share as a 20-character bar. */
const bar = (share: number) => {
  const n = Math.round(share * 20);
  return `${'█'.repeat(n)}${' '.repeat(20 - n)}`;
};

/**
 * A live line of which version answers: 40 requests at a time through `ask`, redrawn in place
 * on a terminal (a line every few seconds otherwise), with `state` beside it. Bounded: at most
 * 10 minutes and 30,000 requests.
 */
function liveShare(
  ask: () => Promise<{ status: number; body: string }>,
  state: () => Promise<string>,
): { hold(ms: number): Promise<void>; note(line: string): void; stop(): Promise<void> } {
  const tty = process.stdout.isTTY === true;
  let stopped = false;
  let sent = 0;
  let lastPrinted = 0;
  const deadline = Date.now() + 10 * 60_000;
  const loop = (async () => {
    while (!stopped && Date.now() < deadline && sent < 30_000) {
      const counts: Record<string, number> = {};
      for (let i = 0; i < SAMPLE; i++, sent++) {
        const { status, body } = await ask();
        const key = status === 200 ? body : 'failed';
        counts[key] = (counts[key] ?? 0) + 1;
      }
      const share = Object.entries(counts)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([v, n]) => `${v} ${bar(n / SAMPLE)} ${String(Math.round((n / SAMPLE) * 100)).padStart(3)}%`)
        .join('   ');
      const line = `  ${share}   (${await state().catch(() => '?')})`;
      if (tty) process.stdout.write(`\r\x1b[2K${line}`);
      else if (Date.now() - lastPrinted > 3000) {
        console.log(line);
        lastPrinted = Date.now();
      }
    }
  })();
  return {
    hold: (ms) => new Promise((r) => setTimeout(r, ms)),
    note(line) {
      process.stdout.write(tty ? `\r\x1b[2K${line}\n` : `${line}\n`);
    },
    async stop() {
      stopped = true;
      await loop;
      if (tty) process.stdout.write('\n');
    },
  };
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
