// Applications deploying to another cluster, declared as Argo CD declares one: a Secret labelled
// argocd.argoproj.io/secret-type=cluster in the controller's namespace, with name, server and a
// config of bearer token or TLS client certificates. The other cluster is a second real control
// plane started by this file; the controller runs against the shared one, as a Manager, and
// reaches the second only through what the Secret says.
// https://argo-cd.readthedocs.io/en/stable/operator-manual/declarative-setup/#clusters
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeClient, WritesFencedError, isAlreadyExists, isNotFound } from '../../src/core/kube/client.ts';
import { Logger, silentLogger } from '../../src/controller/runtime/log.ts';
import { Manager } from '../../src/controller/runtime/manager.ts';
import { setupApplicationController } from '../../src/controller/sync/controller.ts';
import { APPLICATION, REFRESH_ANNOTATION, type Application } from '../../src/controller/sync/types.ts';
import { LocalControlPlane } from '../cluster/controlplane.ts';
import { installCRDs } from '../cluster/crds.ts';
import { GitServer } from '../cluster/git-server.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const ns = useTestNamespace('appclusters');
const CM = { apiVersion: 'v1', resource: 'configmaps' };
const SECRETS = { apiVersion: 'v1', resource: 'secrets' };
const DEPLOYMENTS = { apiVersion: 'apps/v1', resource: 'deployments' };
/** The namespace the applications deploy to on the other cluster (created by CreateNamespace=true). */
const TEAM = 'team';

let remote: LocalControlPlane;
let remoteClient: KubeClient;
let local: KubeClient;
let git: GitServer;
let manager: Manager;
let cacheDir: string;
let server: string;
/** A ServiceAccount token of the other cluster, bound to cluster-admin there. */
let token: string;
const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

beforeAll(async () => {
  remote = await LocalControlPlane.start({
    dir: join(tmpdir(), `kube-actions-remote-${process.pid}`),
    attached: true,
    nodes: 0,
    binDir: process.env.KUBE_ACTIONS_BIN_DIR,
  });
  const remoteKc = remote.client();
  server = remoteKc.getCurrentCluster()!.server;
  remoteClient = new KubeClient(remoteKc);
  const core = remoteKc.makeApiClient(k8s.CoreV1Api);
  await core.createNamespacedServiceAccount({
    namespace: 'default',
    body: { metadata: { name: 'deployer' } },
  });
  await remoteKc.makeApiClient(k8s.RbacAuthorizationV1Api).createClusterRoleBinding({
    body: {
      metadata: { name: 'deployer' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
      subjects: [{ kind: 'ServiceAccount', name: 'deployer', namespace: 'default' }],
    },
  });
  const issued = await core.createNamespacedServiceAccountToken({
    name: 'deployer',
    namespace: 'default',
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  token = issued.status!.token!;

  await installCRDs(ns.kc);
  local = new KubeClient(ns.kc);
  git = await GitServer.start();
  cacheDir = await mkdtemp(join(tmpdir(), 'appclusters-'));
  manager = new Manager({
    kubeConfig: ns.kc,
    logger: process.env.APP_TEST_LOG ? new Logger({ level: 'debug' }) : silentLogger,
  });
  setupApplicationController(manager, {
    namespace: ns.name,
    credentialsNamespace: ns.name,
    cacheDir,
    pollIntervalMs: 3_600_000,
    progressingRequeueMs: 500,
  });
  await manager.start();
}, 180_000);

afterAll(async () => {
  await manager?.stop();
  await local?.close();
  await remoteClient?.close();
  await git?.stop();
  await remote?.stop();
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
}, 60_000);

/** The CA and the admin client certificate of the other cluster, as Argo CD's config holds them. */
async function remoteTls(): Promise<{ caData: string; certData: string; keyData: string }> {
  const kc = remote.client();
  return {
    caData: b64(await readFile(kc.getCurrentCluster()!.caFile!)),
    certData: b64(await readFile(kc.getCurrentUser()!.certFile!)),
    keyData: b64(await readFile(kc.getCurrentUser()!.keyFile!)),
  };
}

/** Creates or replaces the cluster Secret `name` (Argo CD's declarative cluster). */
async function clusterSecret(name: string, clusterName: string, config: unknown): Promise<void> {
  const body = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: ns.name, labels: { 'argocd.argoproj.io/secret-type': 'cluster' } },
    stringData: { name: clusterName, server, config: JSON.stringify(config) },
  };
  try {
    await local.create(SECRETS, body);
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
    await local.patch(SECRETS, ns.name, name, { data: null, stringData: body.stringData });
  }
}

async function getApp(name: string): Promise<Application | undefined> {
  return local.get<Application>(APPLICATION, ns.name, name).catch((err: unknown) => {
    if (isNotFound(err)) return undefined;
    throw err;
  });
}

async function waitFor(
  name: string,
  until: (app: Application) => boolean,
  what: string,
): Promise<Application> {
  try {
    return await eventually(
      what,
      async () => {
        const app = await getApp(name);
        return app && until(app) ? app : undefined;
      },
      60_000,
    );
  } catch (err) {
    const status = JSON.stringify((await getApp(name))?.status ?? null, null, 1);
    throw new Error(`${(err as Error).message}\nlast status: ${status.slice(0, 4000)}`, { cause: err });
  }
}

async function remoteConfigMap(name: string): Promise<{ data?: Record<string, string> } | undefined> {
  return remoteClient.get<{ data?: Record<string, string> }>(CM, TEAM, name).catch((err: unknown) => {
    if (isNotFound(err)) return undefined;
    throw err;
  });
}

const CONFIGMAP = (name: string, value: string) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  value: "${value}"\n`;
const IDLE_DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: main, image: registry.example/web:1}]
`;

const synced = (revision: string) => (app: Application) =>
  app.status?.sync?.status === 'Synced' &&
  app.status.sync.revision === revision &&
  app.status.operationState?.phase === 'Succeeded';

describe('other clusters (Argo CD cluster Secrets)', () => {
  test('a destination by name: refused until its Secret exists, then synced there (bearer token), healthy by that cluster, self-healed from its watch, pruned there', async () => {
    await git.createRepo('remote-app', {
      'cm.yaml': CONFIGMAP('settings', 'one'),
      'extra.yaml': CONFIGMAP('extra', 'x'),
      'web.yaml': IDLE_DEPLOYMENT,
    });
    const head = await git.revParse('remote-app');
    await local.create(APPLICATION, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Application',
      metadata: { name: 'far', namespace: ns.name, finalizers: ['resources-finalizer.argocd.argoproj.io'] },
      spec: {
        source: { repoURL: git.url('remote-app'), targetRevision: 'main', path: '.' },
        destination: { name: 'remote', namespace: TEAM },
        syncPolicy: { automated: { prune: true, selfHeal: true }, syncOptions: ['CreateNamespace=true'] },
      },
    });
    const refused = await waitFor(
      'far',
      (a) => a.status?.conditions?.some((c) => c.type === 'InvalidSpecError') ?? false,
      'the unknown cluster reported',
    );
    expect(refused.status?.conditions?.find((c) => c.type === 'InvalidSpecError')?.message).toBe(
      'destination: there are no clusters with this name: remote',
    );

    // The Secret alone wakes the application (no refresh, and the poll is an hour).
    await clusterSecret('cluster-remote', 'remote', {
      bearerToken: token,
      tlsClientConfig: { caData: (await remoteTls()).caData },
    });
    // Progressing until the other cluster's Deployment controller has observed the Deployment:
    // the status follows that cluster's watch.
    const app = await waitFor(
      'far',
      (a) => synced(head)(a) && a.status?.health?.status === 'Healthy',
      'synced to the other cluster and healthy there',
    );
    expect(app.status?.resources?.map((r) => `${r.kind}/${r.namespace}/${r.name}`).sort()).toEqual([
      `ConfigMap/${TEAM}/extra`,
      `ConfigMap/${TEAM}/settings`,
      `Deployment/${TEAM}/web`,
    ]);
    expect((await remoteConfigMap('settings'))?.data).toEqual({ value: 'one' });
    expect(
      await local.get(CM, TEAM, 'settings').catch((err: unknown) => (isNotFound(err) ? 'absent' : err)),
    ).toBe('absent');
    // Health comes from the other cluster's Deployment controller: observed there, not assumed.
    const web = await remoteClient.get<{ status?: { observedGeneration?: number } }>(
      DEPLOYMENTS,
      TEAM,
      'web',
    );
    expect(web.status?.observedGeneration).toBe(1);

    // Drift on the other cluster is seen by its watch and healed.
    await remoteClient.delete(CM, TEAM, 'settings');
    await eventually(
      'the deleted ConfigMap put back',
      async () => (await remoteConfigMap('settings')) ?? undefined,
    );

    // A removed file is pruned there.
    const second = await git.commitFiles(
      'remote-app',
      { 'extra.yaml': null, 'cm.yaml': CONFIGMAP('settings', 'two') },
      'prune',
    );
    await local.patch(APPLICATION, ns.name, 'far', {
      metadata: { annotations: { [REFRESH_ANNOTATION]: 'normal' } },
    });
    await waitFor('far', synced(second), 'the second commit synced');
    expect((await remoteConfigMap('settings'))?.data).toEqual({ value: 'two' });
    await eventually('extra pruned', async () =>
      (await remoteConfigMap('extra')) === undefined ? true : undefined,
    );
  });

  test('a destination by server; a wrong token is a clear error that does not contain it; TLS client certificates from the rotated Secret work; deleting the application deletes what it made there', async () => {
    await git.createRepo('remote-two', { 'cm.yaml': CONFIGMAP('by-server', 'yes') });
    const head = await git.revParse('remote-two');
    // Two Secrets for one server would be ambiguous: this test rotates the one the first made.
    await clusterSecret('cluster-remote', 'remote', {
      bearerToken: 'not-the-token-7f3a',
      tlsClientConfig: { caData: (await remoteTls()).caData },
    });
    await local.create(APPLICATION, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Application',
      metadata: {
        name: 'by-server',
        namespace: ns.name,
        finalizers: ['resources-finalizer.argocd.argoproj.io'],
      },
      spec: {
        source: { repoURL: git.url('remote-two'), targetRevision: 'main', path: '.' },
        destination: { server: `${server}/`, namespace: TEAM },
        syncPolicy: { automated: { prune: true }, syncOptions: ['CreateNamespace=true'] },
      },
    });
    const failing = await waitFor(
      'by-server',
      (a) =>
        a.status?.operationState?.phase === 'Failed' ||
        (a.status?.conditions?.some((c) => /401|Unauthorized/i.test(c.message)) ?? false),
      'the refused token reported',
    );
    expect(JSON.stringify(failing.status)).toMatch(/401|Unauthorized/i);
    expect(JSON.stringify(failing.status)).not.toContain('not-the-token-7f3a');
    expect(await remoteConfigMap('by-server')).toBeUndefined();

    await clusterSecret('cluster-remote', 'remote', { tlsClientConfig: await remoteTls() });
    await local.patch(APPLICATION, ns.name, 'by-server', {
      metadata: { annotations: { [REFRESH_ANNOTATION]: 'normal' } },
      operation: { sync: { revision: head }, initiatedBy: { username: 'test' } },
    });
    await waitFor('by-server', synced(head), 'synced with the client certificate');
    expect((await remoteConfigMap('by-server'))?.data).toEqual({ value: 'yes' });

    await local.delete(APPLICATION, ns.name, 'by-server');
    await eventually('the application gone', async () =>
      (await getApp('by-server')) === undefined ? true : undefined,
    );
    expect(await remoteConfigMap('by-server')).toBeUndefined();
    // The other application's objects on the same cluster are untouched.
    expect((await remoteConfigMap('settings'))?.data).toEqual({ value: 'two' });
  });

  test("another cluster's client writes only while the controller's own may: a guard that says no, or a fence, refuses there too", async () => {
    const leader = new KubeClient(ns.kc);
    const follower = new KubeClient(remote.client());
    try {
      let holdsLease = true;
      leader.setWriteGuard(() => holdsLease);
      follower.followWrites(leader);
      const body = (name: string) => ({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name, namespace: 'default' },
      });
      await follower.create(CM, body('while-leading'));
      holdsLease = false;
      await expect(follower.create(CM, body('lease-lapsed'))).rejects.toBeInstanceOf(WritesFencedError);
      holdsLease = true;
      leader.fenceWrites('lost the lease');
      await expect(follower.create(CM, body('fenced'))).rejects.toThrow('lost the lease');
      // Reads go on.
      expect(
        (await follower.get<{ metadata: { name: string } }>(CM, 'default', 'while-leading')).metadata.name,
      ).toBe('while-leading');
      expect(
        await remoteClient.get(CM, 'default', 'lease-lapsed').catch((err: unknown) => isNotFound(err)),
      ).toBe(true);
    } finally {
      await leader.close();
      await follower.close();
    }
  });
});
