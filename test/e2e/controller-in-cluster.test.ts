// The controller as a user runs it: its own image (built as `make image` builds it) pulled by the
// real node's containerd, installed with the Helm chart into a namespace that enforces PodSecurity
// `restricted`, two replicas on their ServiceAccount's RBAC and in-cluster config, electing a
// leader with a Lease. It syncs an Application from the git server (reached over the pods'
// network), refreshes at once on a signed push webhook sent to its Service, and carries on when
// its leader pod is deleted.
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { stringify } from 'yaml';
import { KubeClient, PatchType } from '../../src/core/kube/client.ts';
import { ROLLOUT, type Rollout } from '../../src/controller/rollout/types.ts';
import { APPLICATION, type Application } from '../../src/controller/sync/types.ts';
import { installChart, pushControllerImage, uninstallChart } from '../cluster/controller-chart.ts';
import { installCRDs } from '../cluster/crds.ts';
import { GitServer } from '../cluster/git-server.ts';
import { pushWebhook } from '../cluster/push-webhook.ts';
import { OciRegistry } from '../cluster/registry.ts';
import { describeOnRealNode, eventually, useTestNamespace, type RealNodeInfo } from '../cluster/testing.ts';
import { appRollout, appService } from './app-env.ts';
import { buildAppImage } from './app-image.ts';
import { sample } from './traffic.ts';

const PODS = { apiVersion: 'v1', resource: 'pods' };
const NAMESPACES = { apiVersion: 'v1', resource: 'namespaces', namespaced: false };
const SECRETS = { apiVersion: 'v1', resource: 'secrets' };
const CONFIGMAPS = { apiVersion: 'v1', resource: 'configmaps' };
const SERVICES = { apiVersion: 'v1', resource: 'services' };
const LEASES = { apiVersion: 'coordination.k8s.io/v1', resource: 'leases' };
const DEPLOYMENTS = { apiVersion: 'apps/v1', resource: 'deployments' };
const REPO = 'e2e/in-cluster';

interface Pod {
  metadata: { name: string; uid: string; deletionTimestamp?: string };
  spec: { nodeName?: string; containers: { securityContext?: Record<string, unknown> }[] };
  status?: { phase?: string; conditions?: { type: string; status: string }[] };
}

const ready = (p: Pod) =>
  !p.metadata.deletionTimestamp &&
  p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;

function manifests(node: RealNodeInfo, image: string, round: number): Record<string, string> {
  const strategy = { canary: { steps: [{ setWeight: 50 }, { pause: { duration: '1s' } }] } };
  return {
    'web/rollout.yaml': appRollout(node, image, 2, strategy),
    'web/service.yaml': appService('web'),
    'web/settings.yaml': stringify({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'settings' },
      data: { round: String(round) },
    }),
  };
}

/** A push webhook POSTed to `host:80/api/webhook` (the controller's Service), signed with `secret` if given. */
function postWebhook(
  host: string,
  repoURL: string,
  secret?: string,
): Promise<{ status: number; body: string }> {
  const { body, headers } = pushWebhook({ repoURL, ...(secret ? { secret } : {}) });
  return new Promise((resolveAnswer, reject) => {
    const req = request(
      { host, port: 80, path: '/api/webhook', method: 'POST', headers, agent: false, timeout: 10_000 },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolveAnswer({ status: res.statusCode ?? 0, body: text.trim() }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('the webhook did not answer in 10 s')));
    req.on('error', reject);
    req.end(body);
  });
}

describeOnRealNode('the controller in-cluster, from its image, installed by the chart', (node) => {
  const system = useTestNamespace('e2e-kube-actions');
  const apps = useTestNamespace('e2e-in-cluster-apps');
  const release = `ka-${randomBytes(3).toString('hex')}`;
  const secret = randomBytes(16).toString('hex');
  let client: KubeClient;
  let registry: OciRegistry;
  let git: GitServer;
  let images: Record<string, string>;
  let webhookIP: string;
  const kubeconfig = process.env.KUBECONFIG!;

  const controllerPods = async () =>
    (
      await client.request<{ items: Pod[] }>('GET', `/api/v1/namespaces/${system.name}/pods`, {
        query: { labelSelector: `app.kubernetes.io/instance=${release}` },
      })
    ).items;
  const leader = async () =>
    (await client.get<{ spec: { holderIdentity?: string } }>(LEASES, system.name, `${release}-controller`))
      .spec.holderIdentity;
  /** The controller pods' last log lines, so a failure here shows what the controller saw. */
  const logs = async () => {
    const lines: string[] = [];
    for (const pod of await controllerPods().catch(() => [])) {
      const text = await system.kc
        .makeApiClient(k8s.CoreV1Api)
        .readNamespacedPodLog({ name: pod.metadata.name, namespace: system.name, tailLines: 40 })
        .catch((err: Error) => `(no log: ${err.message})`);
      lines.push(`--- ${pod.metadata.name}\n${text}`);
    }
    return lines.join('\n');
  };
  const explained = async <T>(wait: Promise<T>): Promise<T> => {
    try {
      return await wait;
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${await logs()}`, { cause: err });
    }
  };
  const untilRollout = (check: (ro: Rollout) => boolean, what: string) =>
    explained(
      eventually(
        what,
        async () => {
          const ro = await client.get<Rollout>(ROLLOUT, apps.name, 'web');
          return check(ro) ? ro : undefined;
        },
        180_000,
      ),
    );
  beforeAll(async () => {
    client = new KubeClient(system.kc);
    // What the chart's pods must satisfy: the strictest Pod Security Standard, enforced.
    await client.patch(
      NAMESPACES,
      '',
      system.name,
      {
        metadata: {
          labels: {
            'pod-security.kubernetes.io/enforce': 'restricted',
            'pod-security.kubernetes.io/enforce-version': 'latest',
          },
        },
      },
      PatchType.merge,
    );
    registry = await OciRegistry.start({ gateway: node.gateway });
    await node.addRegistry(registry.host, registry.gatewayHost);
    const controllerImage = await pushControllerImage(`${registry.host}/kube-actions/kube-actions`);
    images = {
      v1: await buildAppImage(registry, 'v1'),
      v2: await buildAppImage(registry, 'v2'),
    };
    git = await GitServer.start({ gateway: node.gateway });
    await git.createRepo(REPO, manifests(node, images.v1!, 0));
    await installCRDs(system.kc);
    await client.create(SECRETS, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'webhook', namespace: system.name },
      stringData: { secret },
    } as never);
    await installChart({
      release,
      namespace: system.name,
      kubeconfig,
      image: controllerImage,
      skipCrds: true,
      values: {
        replicas: 2,
        nodeSelector: node.nodeSelector,
        tolerations: node.tolerations,
        webhook: { existingSecret: 'webhook' },
        // Only the webhook can make a commit land within the test: Git is polled hourly.
        controller: { pollInterval: '1h', leaseDuration: '6s', renewDeadline: '4s', retryPeriod: '1s' },
        resources: { requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '512Mi' } },
      },
    });
    await client.create(APPLICATION, {
      apiVersion: APPLICATION.apiVersion,
      kind: 'Application',
      metadata: { name: 'web', namespace: system.name },
      spec: {
        source: { repoURL: git.gatewayUrl(REPO), targetRevision: 'main', path: 'web' },
        destination: { server: 'https://kubernetes.default.svc', namespace: apps.name },
        syncPolicy: { automated: { prune: true, selfHeal: true } },
      },
    } as never);
    await explained(
      eventually(
        'both controller replicas ready',
        async () => ((await controllerPods()).filter(ready).length === 2 ? true : undefined),
        180_000,
      ),
    );
    webhookIP = (
      await client.get<{ spec: { clusterIP: string } }>(SERVICES, system.name, `${release}-controller`)
    ).spec.clusterIP;
  }, 600_000);
  afterAll(async () => {
    if (client) {
      await client.delete(APPLICATION, system.name, 'web').catch(() => undefined);
      await uninstallChart({ release, namespace: system.name, kubeconfig }).catch(() => undefined);
    }
    await git?.stop();
    await registry?.stop();
  });

  test('two replicas run as the chart declares under PodSecurity restricted, and one holds the Lease', async () => {
    const pods = await controllerPods();
    expect(pods.filter(ready)).toHaveLength(2);
    for (const pod of pods) {
      expect(pod.spec.nodeName).toBe(node.name);
      expect(pod.spec.containers[0]!.securityContext).toMatchObject({
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
      });
    }
    const holder = await explained(eventually('a leader', leader, 60_000));
    expect(pods.map((p) => p.metadata.name)).toContain(holder);
    // The policy is enforced there, so the replicas' running proves they comply.
    const refused = await client
      .create(
        PODS,
        {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'privileged', namespace: system.name },
          spec: { containers: [{ name: 'c', image: images.v1!, securityContext: { privileged: true } }] },
        } as never,
        { dryRun: 'All' },
      )
      .then(
        () => 'created',
        (err: Error) => err.message,
      );
    expect(refused).toMatch(/violates PodSecurity "restricted:latest"/);
  });

  test('syncs the Application from the git server, and its Rollout serves v1', async () => {
    const app = await explained(
      eventually(
        'the Application Synced and Healthy',
        async () => {
          const a = await client.get<Application>(APPLICATION, system.name, 'web');
          return a.status?.sync?.status === 'Synced' && a.status.health?.status === 'Healthy' ? a : undefined;
        },
        180_000,
      ),
    );
    expect(app.status?.sync?.revision).toBe(await git.revParse(REPO));
    await untilRollout(
      (ro) => ro.status?.phase === 'Healthy' && ro.status.availableReplicas === 2,
      'v1 healthy',
    );
    const ip = (await client.get<{ spec: { clusterIP: string } }>(SERVICES, apps.name, 'web')).spec.clusterIP;
    // Once kube-proxy has the endpoints: every answer from v1.
    await explained(
      eventually('only v1 answering', async () => ((await sample(ip, 20)).v1 === 20 ? true : undefined)),
    );
  });

  test('a signed push webhook sent to its Service lands a commit at once; an unsigned one is refused', async () => {
    await git.commitFiles(REPO, manifests(node, images.v1!, 1), 'settings: round 1');
    const unsigned = await postWebhook(webhookIP, git.gatewayUrl(REPO));
    expect(unsigned.status).toBe(401);
    const forged = await postWebhook(webhookIP, git.gatewayUrl(REPO), 'not-the-secret');
    expect(forged.status).toBe(401);

    const sent = Date.now();
    const signed = await postWebhook(webhookIP, git.gatewayUrl(REPO), secret);
    expect(signed).toEqual({ status: 200, body: JSON.stringify({ message: 'refreshed 1 application(s)' }) });
    await explained(
      eventually(
        'round 1 applied',
        async () =>
          (await client.get<{ data: { round: string } }>(CONFIGMAPS, apps.name, 'settings')).data.round ===
          '1'
            ? true
            : undefined,
        30_000,
      ),
    );
    console.log(`webhook -> applied by the in-cluster controller in ${Date.now() - sent} ms`);
  });

  test('its leader pod deleted, the other replica takes the Lease and a new version rolls out', async () => {
    const before = await leader();
    const deleted = Date.now();
    await client.delete(PODS, system.name, before!);
    const next = await explained(
      eventually(
        'another replica holding the Lease',
        async () => {
          const holder = await leader();
          return holder && holder !== before ? holder : undefined;
        },
        60_000,
      ),
    );
    console.log(`leader ${before} deleted; ${next} took over after ${Date.now() - deleted} ms`);
    expect((await controllerPods()).map((p) => p.metadata.name)).toContain(next);

    await git.commitFiles(REPO, manifests(node, images.v2!, 2), 'web: v2');
    expect((await postWebhook(webhookIP, git.gatewayUrl(REPO), secret)).status).toBe(200);
    await untilRollout(
      (ro) =>
        ro.spec.template?.spec?.containers?.[0]?.image === images.v2 &&
        ro.status?.observedGeneration === String(ro.metadata.generation) &&
        ro.status.phase === 'Healthy' &&
        ro.status.stableRS === ro.status.currentPodHash,
      'v2 rolled out by the new leader',
    );
    const ip = (await client.get<{ spec: { clusterIP: string } }>(SERVICES, apps.name, 'web')).spec.clusterIP;
    await explained(
      eventually('only v2 answering', async () => ((await sample(ip, 20)).v2 === 20 ? true : undefined)),
    );
    // The Deployment replaced the deleted pod: two replicas again.
    await explained(
      eventually(
        'the Deployment back to two ready replicas',
        async () => {
          const d = await client.get<{ status?: { readyReplicas?: number } }>(
            DEPLOYMENTS,
            system.name,
            `${release}-controller`,
          );
          return d.status?.readyReplicas === 2 ? true : undefined;
        },
        120_000,
      ),
    );
  });
});
