// Both install modes of the Helm chart, with the controller running as the chart's ServiceAccount
// (a token the apiserver issues for it, never the admin) and exactly the chart's arguments:
// - every permission it needs is granted: it becomes ready (every watch listed), rolls a Rollout
//   out through an analysis step, syncs an Application, and its log has no "forbidden";
// - nothing more than the mode promises: SubjectAccessReviews of what the namespace install must
//   not be able to do, and an Application reaching outside the namespace refused with a condition,
//   nothing created.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { parseAllDocuments } from 'yaml';
import { KubeClient, isNotFound } from '../../src/core/kube/client.ts';
import type { KubeObject, ResourceRef } from '../../src/core/kube/objects.ts';
import { ROLLOUT, type Rollout } from '../../src/controller/rollout/types.ts';
import { APPLICATION, type Application } from '../../src/controller/sync/types.ts';
import { installCRDs } from '../cluster/crds.ts';
import { startControllerProcess, type ControllerProcess } from '../cluster/controller-process.ts';
import { GitServer } from '../cluster/git-server.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');
const cluster = useTestNamespace('install-cluster');
const namespaced = useTestNamespace('install-ns');
const neighbour = useTestNamespace('install-other');

const ref = (apiVersion: string, resource: string, namespaced = true): ResourceRef => ({
  apiVersion,
  resource,
  namespaced,
});
const RBAC_KINDS: Record<string, ResourceRef> = {
  ServiceAccount: ref('v1', 'serviceaccounts'),
  Role: ref('rbac.authorization.k8s.io/v1', 'roles'),
  RoleBinding: ref('rbac.authorization.k8s.io/v1', 'rolebindings'),
  ClusterRole: ref('rbac.authorization.k8s.io/v1', 'clusterroles', false),
  ClusterRoleBinding: ref('rbac.authorization.k8s.io/v1', 'clusterrolebindings', false),
};
const SERVICES = ref('v1', 'services');
const CONFIGMAPS = ref('v1', 'configmaps');
const TEMPLATES = ref('kube-actions.dev/v1alpha1', 'analysistemplates');

let admin: KubeClient;
let git: GitServer;
let metrics: Server;
let metricsUrl = '';
const created: { ref: ResourceRef; obj: KubeObject }[] = [];
const controllers: ControllerProcess[] = [];

beforeAll(async () => {
  await installCRDs(cluster.kc);
  admin = new KubeClient(cluster.kc);
  git = await GitServer.start();
  metrics = createServer((_req, res) =>
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'),
  );
  await new Promise<void>((r) => metrics.listen(0, '127.0.0.1', r));
  metricsUrl = `http://127.0.0.1:${(metrics.address() as { port: number }).port}/`;
});
afterAll(async () => {
  for (const c of controllers) await c.stop();
  // Cluster-scoped objects do not go with the test namespaces.
  for (const { ref: r, obj } of created.reverse()) {
    if (r.namespaced === false) await admin.delete(r, '', obj.metadata!.name!).catch(() => undefined);
  }
  await git?.stop();
  await new Promise<void>((r) => (metrics ? metrics.close(() => r()) : r()));
  await admin?.close();
});

interface Install {
  release: string;
  namespace: string;
  args: string[];
  /** A kubeconfig authenticating as the chart's ServiceAccount. */
  kubeconfig: string;
  controller: ControllerProcess;
}

/** Installs the chart's RBAC (by helm template), issues a token for its ServiceAccount, starts the controller as it. */
async function install(mode: 'cluster' | 'namespace', namespace: string): Promise<Install> {
  const release = `ka-${randomBytes(3).toString('hex')}`;
  const { stdout } = await run('helm', [
    'template',
    release,
    join(ROOT, 'deploy', 'chart', 'kube-actions'),
    '--namespace',
    namespace,
    '--set',
    `installMode=${mode}`,
    '--skip-crds',
  ]);
  const docs = parseAllDocuments(stdout)
    .map(
      (d) => d.toJS() as KubeObject & { spec?: { template: { spec: { containers: { args: string[] }[] } } } },
    )
    .filter(Boolean);
  for (const obj of docs) {
    const kindRef = RBAC_KINDS[obj.kind!];
    if (!kindRef) continue;
    await admin.create(kindRef, {
      ...obj,
      metadata: { ...obj.metadata, ...(kindRef.namespaced === false ? {} : { namespace }) },
    });
    created.push({ ref: kindRef, obj });
  }
  const args = docs.find((d) => d.kind === 'Deployment')!.spec!.template.spec.containers[0]!.args;
  const { status } = await admin.request<{ status: { token: string } }>(
    'POST',
    `/api/v1/namespaces/${namespace}/serviceaccounts/${release}-controller/token`,
    {
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: { expirationSeconds: 3600 },
      },
    },
  );
  const server = cluster.kc.getCurrentCluster()!;
  const dir = await mkdtemp(join(tmpdir(), 'kube-actions-install-'));
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters: [{name: c, cluster: {server: "' +
        server.server +
        '", certificate-authority: "' +
        server.caFile +
        '"}}]',
      `users: [{name: sa, user: {token: "${status.token}"}}]`,
      'contexts: [{name: c, context: {cluster: c, user: sa}}]',
      'current-context: c',
      '',
    ].join('\n'),
  );
  const controller = await startControllerProcess([...args, `--kubeconfig=${kubeconfig}`], {
    env: { POD_NAMESPACE: namespace, POD_NAME: `${release}-0` },
    logLevel: 'info',
  });
  controllers.push(controller);
  return { release, namespace, args, kubeconfig, controller };
}

/** Whether the ServiceAccount may do it, as the apiserver's authorizer answers. */
async function can(
  i: Install,
  verb: string,
  resource: string,
  namespace?: string,
  group = '',
): Promise<boolean> {
  const review = await admin.request<{ status: { allowed: boolean } }>(
    'POST',
    '/apis/authorization.k8s.io/v1/subjectaccessreviews',
    {
      body: {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: {
          user: `system:serviceaccount:${i.namespace}:${i.release}-controller`,
          groups: ['system:serviceaccounts', `system:serviceaccounts:${i.namespace}`, 'system:authenticated'],
          resourceAttributes: { verb, resource, group, ...(namespace ? { namespace } : {}) },
        },
      },
    },
  );
  return review.status.allowed;
}

/** A canary with an analysis step, in `namespace`: Healthy on v2 means rollout and analysis controllers both worked. */
async function rolloutThroughAnalysis(namespace: string): Promise<void> {
  await admin.create(TEMPLATES, {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'AnalysisTemplate',
    metadata: { name: 'ok', namespace },
    spec: {
      metrics: [
        {
          name: 'ok',
          successCondition: 'result == true',
          provider: { web: { url: metricsUrl, jsonPath: '{$.ok}' } },
        },
      ],
    },
  } as never);
  for (const name of ['web-stable', 'web-canary']) {
    await admin.create(SERVICES, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace },
      spec: { selector: { app: 'web' }, ports: [{ port: 80 }] },
    } as never);
  }
  const template = (image: string) => ({
    metadata: { labels: { app: 'web' } },
    spec: { containers: [{ name: 'web', image }] },
  });
  await admin.create(ROLLOUT, {
    apiVersion: ROLLOUT.apiVersion,
    kind: 'Rollout',
    metadata: { name: 'web', namespace },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      template: template('registry.example/web:1'),
      strategy: {
        canary: {
          stableService: 'web-stable',
          canaryService: 'web-canary',
          steps: [{ setWeight: 50 }, { analysis: { templates: [{ templateName: 'ok' }] } }],
        },
      },
    },
  } as never);
  const get = () => admin.get<Rollout>(ROLLOUT, namespace, 'web');
  await eventually(
    'v1 Healthy',
    async () => ((await get()).status?.phase === 'Healthy' ? true : undefined),
    60_000,
  );
  await admin.patch(ROLLOUT, namespace, 'web', { spec: { template: template('registry.example/web:2') } });
  const done = await eventually(
    'v2 through its analysis',
    async () => {
      const ro = await get();
      return ro.status?.phase === 'Healthy' &&
        ro.status.stableRS === ro.status.currentPodHash &&
        ro.status.canary?.currentStepAnalysisRunStatus
        ? ro
        : undefined;
    },
    90_000,
  );
  expect(done.status?.canary?.currentStepAnalysisRunStatus?.status).toBe('Successful');
}

async function application(
  namespace: string,
  name: string,
  repo: string,
  destination: string,
): Promise<void> {
  await admin.create(APPLICATION, {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'Application',
    metadata: { name, namespace },
    spec: {
      project: 'default',
      source: { repoURL: git.url(repo), targetRevision: 'main', path: '.' },
      destination: { server: 'https://kubernetes.default.svc', namespace: destination },
      syncPolicy: { automated: { prune: true } },
    },
  } as never);
}

const getApp = (namespace: string, name: string) => admin.get<Application>(APPLICATION, namespace, name);
const configMap = (name: string) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  k: v\n`;

async function exists(r: ResourceRef, namespace: string, name: string): Promise<boolean> {
  try {
    await admin.get(r, namespace, name);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

describe('the namespace-scoped install (a Role, no ClusterRole)', () => {
  let i: Install;
  beforeAll(async () => {
    i = await install('namespace', namespaced.name);
  }, 120_000);

  test('the chart grants no cluster-wide power: SubjectAccessReviews', async () => {
    expect(i.args).toEqual(expect.arrayContaining(['--namespaced', `--namespace=${namespaced.name}`]));
    expect(await can(i, 'create', 'deployments', namespaced.name, 'apps')).toBe(true);
    expect(await can(i, 'get', 'secrets', namespaced.name)).toBe(true);
    expect(await can(i, 'list', 'secrets', neighbour.name)).toBe(false);
    expect(await can(i, 'list', 'secrets')).toBe(false);
    expect(await can(i, 'create', 'deployments', neighbour.name, 'apps')).toBe(false);
    expect(await can(i, 'create', 'namespaces')).toBe(false);
    expect(await can(i, 'create', 'clusterroles', undefined, 'rbac.authorization.k8s.io')).toBe(false);
    expect(await can(i, 'list', 'clusteranalysistemplates', undefined, 'kube-actions.dev')).toBe(false);
  });

  test('with only those permissions a Rollout goes through analysis and an Application syncs', async () => {
    await rolloutThroughAnalysis(namespaced.name);
    await git.createRepo('ns-app', { 'cm.yaml': configMap('ns-app-config') });
    await application(namespaced.name, 'ns-app', 'ns-app', namespaced.name);
    await eventually(
      'ns-app Synced',
      async () =>
        (await getApp(namespaced.name, 'ns-app')).status?.sync?.status === 'Synced' ? true : undefined,
      60_000,
    );
    expect(await exists(CONFIGMAPS, namespaced.name, 'ns-app-config')).toBe(true);
    // Every watch it needs listed and nothing was refused.
    expect(i.controller.logs.filter((l) => /forbidden/i.test(l))).toEqual([]);
  });

  test('an Application reaching outside the namespace is refused with a condition; nothing is created', async () => {
    await git.createRepo('ns-escape', {
      'cm.yaml': configMap('ns-escape-config'),
      'role.yaml':
        'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: ns-escape\nrules: []\n',
    });
    await application(namespaced.name, 'ns-escape', 'ns-escape', namespaced.name);
    await application(namespaced.name, 'ns-elsewhere', 'ns-app', neighbour.name);
    const condition = async (name: string, pattern: RegExp) =>
      eventually(
        `${name}'s condition`,
        async () =>
          (await getApp(namespaced.name, name)).status?.conditions?.find((c) => pattern.test(c.message)),
        60_000,
      );
    await condition(
      'ns-escape',
      /namespace-scoped and manages only namespace .*: rbac.authorization.k8s.io\/ClusterRole\/\/ns-escape is cluster-scoped/,
    );
    await condition('ns-elsewhere', /deploys only to namespace .*: destination.namespace is/);
    expect(await exists(CONFIGMAPS, namespaced.name, 'ns-escape-config')).toBe(false);
    expect(await exists(RBAC_KINDS.ClusterRole!, '', 'ns-escape')).toBe(false);
    expect(await exists(CONFIGMAPS, neighbour.name, 'ns-app-config')).toBe(false);
  });
});

describe('the cluster-wide install (a ClusterRole)', () => {
  let i: Install;
  beforeAll(async () => {
    i = await install('cluster', cluster.name);
  }, 120_000);

  test('it may do what the mode promises: anything, anywhere', async () => {
    expect(await can(i, 'list', 'secrets')).toBe(true);
    expect(await can(i, 'create', 'namespaces')).toBe(true);
    expect(await can(i, 'create', 'deployments', neighbour.name, 'apps')).toBe(true);
  });

  test('a Rollout goes through analysis, and an Application deploys into another namespace, as its ServiceAccount', async () => {
    await rolloutThroughAnalysis(cluster.name);
    await git.createRepo('cl-app', { 'cm.yaml': configMap('cl-app-config') });
    await application(cluster.name, 'cl-app', 'cl-app', neighbour.name);
    await eventually(
      'cl-app Synced',
      async () =>
        (await getApp(cluster.name, 'cl-app')).status?.sync?.status === 'Synced' ? true : undefined,
      60_000,
    );
    expect(await exists(CONFIGMAPS, neighbour.name, 'cl-app-config')).toBe(true);
    expect(i.controller.logs.filter((l) => /forbidden/i.test(l))).toEqual([]);
  });
});
