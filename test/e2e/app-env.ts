// The e2e proofs' common ground: the app's images (built by our build action) in a registry the
// real node pulls from, a git repository holding the app's manifests, the controller running as a
// process on the host, and an Application syncing the repository into the test namespace. Also
// what the proofs wait on before they count answers: ReplicaSets ready, endpoints ready, and
// kube-proxy's rules written for each of them.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { KubeClient, PatchType } from '../../src/core/kube/client.ts';
import { ROLLOUT, SERVICES, type ReplicaSet, type Rollout } from '../../src/controller/rollout/types.ts';
import { APPLICATION, REFRESH_ANNOTATION } from '../../src/controller/sync/types.ts';
import { CLI, startControllerProcess, type ControllerProcess } from '../cluster/controller-process.ts';
import { installCRDs } from '../cluster/crds.ts';
import { GitServer } from '../cluster/git-server.ts';
import { OciRegistry } from '../cluster/registry.ts';
import { NODE24 } from '../cluster/run-action.ts';
import { eventually, type RealNodeInfo, type TestNamespace } from '../cluster/testing.ts';
import { buildAppImage } from './app-image.ts';
import { sample } from './traffic.ts';

const run = promisify(execFile);

export interface AppEnvironment {
  client: KubeClient;
  images: Record<string, string>;
  /** Commits the manifests for `version` and has the Application look now; returns once the Rollout took it. */
  deploy(version: string): Promise<void>;
  /** Commits `files` (null deletes one) and has the Application look now. */
  commit(files: Record<string, string | null>, message: string): Promise<void>;
  untilRollout(check: (ro: Rollout) => boolean, what: string, timeoutMs?: number): Promise<Rollout>;
  /** The Rollout's ReplicaSets ready and `service`'s endpoints programmed by kube-proxy. */
  settled(service: string): Promise<void>;
  /** Waits until each of `versions` answers at `ip` (within a few requests). */
  routed(ip: string, versions: string[]): Promise<void>;
  clusterIP(service: string): Promise<string>;
  rolloutCli(...args: string[]): Promise<unknown>;
  stop(): Promise<void>;
}

export async function startAppEnvironment(
  node: RealNodeInfo,
  ns: TestNamespace,
  versions: string[],
  files: (image: string, version: string) => Record<string, string>,
): Promise<AppEnvironment> {
  const registry = await OciRegistry.start({ gateway: node.gateway });
  await node.addRegistry(registry.host, registry.gatewayHost);
  const images: Record<string, string> = {};
  for (const version of versions) images[version] = await buildAppImage(registry, version);
  const git = await GitServer.start();
  await git.createRepo('e2e/apps', files(images[versions[0]!]!, versions[0]!));
  await installCRDs(ns.kc);
  const client = new KubeClient(ns.kc);
  const controller: ControllerProcess = await startControllerProcess([
    'controller',
    '--leader-elect=false',
    `--namespace=${ns.name}`,
    '--poll-interval=1h',
  ]);
  await client.create(APPLICATION, {
    apiVersion: APPLICATION.apiVersion,
    kind: 'Application',
    metadata: { name: 'web', namespace: ns.name },
    spec: {
      source: { repoURL: git.url('e2e/apps'), targetRevision: 'main', path: 'web' },
      destination: { server: 'https://kubernetes.default.svc', namespace: ns.name },
      syncPolicy: { automated: { prune: true, selfHeal: true } },
    },
  } as never);

  const untilRollout = (check: (ro: Rollout) => boolean, what: string, timeoutMs = 120_000) =>
    eventually(
      what,
      async () => {
        const ro = await client.get<Rollout>(ROLLOUT, ns.name, 'web');
        return check(ro) ? ro : undefined;
      },
      timeoutMs,
    ).catch(async (err: unknown) => {
      // Say where it stuck: the Application's view and the controller's last words.
      const app = await client.get<{ status?: unknown }>(APPLICATION, ns.name, 'web').catch(() => undefined);
      throw new Error(
        `${(err as Error).message}\napplication status: ${JSON.stringify(app?.status)}\ncontroller (last lines):\n${controller.logs.slice(-15).join('\n')}`,
        { cause: err },
      );
    });

  /** The endpoints kube-proxy's rules send `service`'s traffic to, in the node's own network namespace. */
  const proxied = async (service: string) => {
    const { stdout } = await run('nsenter', [
      `--net=${join(node.dir, 'netns')}`,
      'iptables-save',
      '-t',
      'nat',
    ]);
    const rule = new RegExp(`^-A KUBE-SVC-\\S+ .*"${ns.name}/${service}(:\\S*)? -> [^"]+".*-j KUBE-SEP-`);
    return stdout.split('\n').filter((line) => rule.test(line)).length;
  };

  /** A commit, and the Application told to look now (Argo CD's refresh annotation). */
  const commit = async (changed: Record<string, string | null>, message: string) => {
    await git.commitFiles('e2e/apps', changed, message);
    await client.patch(
      APPLICATION,
      ns.name,
      'web',
      { metadata: { annotations: { [REFRESH_ANNOTATION]: 'hard' } } },
      PatchType.merge,
    );
  };

  return {
    client,
    images,
    untilRollout,
    commit,
    async deploy(version) {
      const before = (await client.get<Rollout>(ROLLOUT, ns.name, 'web')).status?.currentPodHash;
      await commit(files(images[version]!, version), `web: ${version}`);
      await untilRollout(
        (ro) =>
          !!ro.status?.currentPodHash &&
          ro.status.currentPodHash !== before &&
          ro.status.observedGeneration === String(ro.metadata.generation),
        `the Rollout to take ${version}`,
      );
    },
    async settled(service) {
      await eventually(
        `the ReplicaSets ready and ${service}'s endpoints programmed`,
        async () => {
          const sets = await client.request<{ items: ReplicaSet[] }>(
            'GET',
            `/apis/apps/v1/namespaces/${ns.name}/replicasets`,
            { query: { labelSelector: 'app=web' } },
          );
          const live = sets.items.filter((rs) => (rs.spec.replicas ?? 0) > 0);
          if (live.some((rs) => (rs.status?.readyReplicas ?? 0) !== rs.spec.replicas)) return undefined;
          const slices = await client.request<{
            items: { endpoints?: { conditions?: { ready?: boolean; terminating?: boolean } }[] }[];
          }>('GET', `/apis/discovery.k8s.io/v1/namespaces/${ns.name}/endpointslices`, {
            query: { labelSelector: `kubernetes.io/service-name=${service}` },
          });
          const endpoints = slices.items.flatMap((sl) => sl.endpoints ?? []);
          // Nothing on its way out, and kube-proxy has a rule for every ready endpoint.
          if (endpoints.some((e) => !e.conditions?.ready || e.conditions.terminating)) return undefined;
          return endpoints.length > 0 && (await proxied(service)) === endpoints.length ? true : undefined;
        },
        120_000,
      );
    },
    async routed(ip, wanted) {
      await eventually(`${wanted.join(' and ')} answering`, async () => {
        const seen = await sample(ip, 40);
        return wanted.every((v) => (seen[v] ?? 0) > 0) ? true : undefined;
      });
    },
    async clusterIP(service) {
      return (await client.get<{ spec: { clusterIP: string } }>(SERVICES, ns.name, service)).spec.clusterIP;
    },
    rolloutCli: (...args) => run(NODE24, [CLI, 'rollout', ...args, 'web', '-n', ns.name]),
    async stop() {
      await controller.stop();
      await git.stop();
      await registry.stop();
    },
  };
}

/** The app's Rollout `web` on the real node, with `strategy`, as YAML. */
export function appRollout(
  node: RealNodeInfo,
  image: string,
  replicas: number,
  strategy: unknown,
  pod: { env?: Record<string, string>; annotations?: Record<string, string> } = {},
): string {
  return stringify({
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'Rollout',
    metadata: { name: 'web' },
    spec: {
      replicas,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' }, ...(pod.annotations ? { annotations: pod.annotations } : {}) },
        spec: {
          tolerations: node.tolerations,
          nodeSelector: node.nodeSelector,
          terminationGracePeriodSeconds: 2,
          containers: [
            {
              name: 'web',
              image,
              ports: [{ containerPort: 8080 }],
              ...(pod.env ? { env: Object.entries(pod.env).map(([name, value]) => ({ name, value })) } : {}),
              readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 1 },
            },
          ],
        },
      },
      strategy,
    },
  });
}

/** A Service `name` in front of the app's pods, as YAML. */
export function appService(name: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name },
    spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] },
  });
}
