// ApplicationSets and the app-of-apps pattern on the real control plane: the ApplicationSet and
// Application controllers in this process (one Manager), Git served by the harness, the
// apiserver's garbage collector (kube-controller-manager) acting on the ownerReferences.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isNotFound, KubeClient } from '../../src/core/kube/client.ts';
import { setupApplicationSetController } from '../../src/controller/appset/controller.ts';
import { ORPHAN_FINALIZER } from '../../src/controller/appset/decide.ts';
import { APPLICATIONSET, type ApplicationSet } from '../../src/controller/appset/types.ts';
import { Logger } from '../../src/controller/runtime/log.ts';
import { Manager } from '../../src/controller/runtime/manager.ts';
import { setupApplicationController } from '../../src/controller/sync/controller.ts';
import { APPLICATION, type Application } from '../../src/controller/sync/types.ts';
import { installCRDs } from '../cluster/crds.ts';
import { GitServer } from '../cluster/git-server.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const ns = useTestNamespace('appset');
const CM = { apiVersion: 'v1', resource: 'configmaps' };
const cm = (name: string, v = '1') =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  v: "${v}"\n`;

let server: GitServer;
let client: KubeClient;
let manager: Manager;
let cacheDir: string;

beforeAll(async () => {
  await installCRDs(ns.kc);
  server = await GitServer.start();
  client = new KubeClient(ns.kc);
  cacheDir = await mkdtemp(join(tmpdir(), 'appset-'));
  manager = new Manager({ kubeConfig: ns.kc, logger: new Logger({ level: 'error', sink: () => undefined }) });
  // A 2-second poll: generators and applications see new commits without a webhook.
  const apps = setupApplicationController(manager, { namespace: ns.name, cacheDir, pollIntervalMs: 2_000 });
  setupApplicationSetController(manager, { namespace: ns.name, repos: apps.repos, pollIntervalMs: 2_000 });
  await manager.start();
});

afterAll(async () => {
  await manager?.stop();
  await client?.close();
  await server?.stop();
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

const getOrUndefined = <T>(p: Promise<T>) =>
  p.catch((err: unknown) => {
    if (isNotFound(err)) return undefined;
    throw err;
  });
const configMap = (name: string) =>
  getOrUndefined(client.get<{ metadata?: object; data?: Record<string, string> }>(CM, ns.name, name));
const application = (name: string) =>
  getOrUndefined(client.get<Application & { metadata: object }>(APPLICATION, ns.name, name));
const appset = (name: string) =>
  getOrUndefined(client.get<ApplicationSet & { metadata: object }>(APPLICATIONSET, ns.name, name));
const applications = async () =>
  (
    await client.request<{ items: Application[] }>(
      'GET',
      `/apis/kube-actions.dev/v1alpha1/namespaces/${ns.name}/applications`,
    )
  ).items;
const names = async (filter: (a: Application) => boolean = () => true) =>
  (await applications())
    .filter(filter)
    .map((a) => a.metadata.name)
    .sort();
const ownedBy = (set: string) => (a: Application) =>
  a.metadata.ownerReferences?.some((r) => r.kind === 'ApplicationSet' && r.name === set) ?? false;
const condition = async (set: string, type: string) =>
  (await appset(set))?.status?.conditions?.find((c) => c.type === type);

function createSet(name: string, spec: ApplicationSet['spec']) {
  return client.create(APPLICATIONSET, {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'ApplicationSet',
    metadata: { name, namespace: ns.name },
    spec,
  });
}

describe('ApplicationSet', () => {
  test('git directories (goTemplate): an Application per directory, synced; a new commit adds and prunes; an edit is reverted; deleting the set deletes them and what they deployed', async () => {
    await server.createRepo('dirs', {
      'apps/web/cm.yaml': cm('dirs-web'),
      'apps/api/cm.yaml': cm('dirs-api'),
      'apps/legacy-old/cm.yaml': cm('dirs-legacy'),
      'apps/.drafts/cm.yaml': cm('dirs-draft'),
      'README.md': 'not a directory',
    });
    await createSet('dirs', {
      goTemplate: true,
      goTemplateOptions: ['missingkey=error'],
      generators: [
        {
          git: {
            repoURL: server.url('dirs'),
            revision: 'main',
            directories: [{ path: 'apps/*' }, { path: 'apps/*-old', exclude: true }],
          },
        },
      ],
      template: {
        metadata: { name: 'dirs-{{.path.basename}}', labels: { component: '{{ index .path.segments 1 }}' } },
        spec: {
          source: { repoURL: server.url('dirs'), targetRevision: 'main', path: '{{.path.path}}' },
          destination: { namespace: ns.name },
          syncPolicy: { automated: { prune: true, selfHeal: true } },
        },
      },
    });
    await eventually(
      'dirs-api and dirs-web synced',
      async () => {
        const apps = (await applications()).filter(ownedBy('dirs'));
        return apps.length === 2 && apps.every((a) => a.status?.sync?.status === 'Synced') ? apps : undefined;
      },
      60_000,
    );
    expect(await names(ownedBy('dirs'))).toEqual(['dirs-api', 'dirs-web']);
    const web = (await application('dirs-web'))!;
    expect(web.metadata.labels).toEqual({ component: 'web' });
    expect(web.metadata.finalizers).toEqual(['resources-finalizer.argocd.argoproj.io']);
    expect(web.metadata.ownerReferences).toEqual([
      expect.objectContaining({
        kind: 'ApplicationSet',
        name: 'dirs',
        controller: true,
        blockOwnerDeletion: true,
      }),
    ]);
    expect((await configMap('dirs-web'))?.data?.v).toBe('1');
    expect(await configMap('dirs-legacy')).toBeUndefined();
    expect(await configMap('dirs-draft')).toBeUndefined();
    const status = await eventually('the set to report both Synced', async () => {
      const s = (await appset('dirs'))?.status;
      return s?.resources?.length === 2 && s.resources.every((r) => r.status === 'Synced') ? s : undefined;
    });
    expect(status.conditions?.map((c) => [c.type, c.status])).toEqual([
      ['ErrorOccurred', 'False'],
      ['ParametersGenerated', 'True'],
      ['ResourcesUpToDate', 'True'],
    ]);

    // A commit removes api and adds db: db is generated, api deleted with what it deployed.
    await server.commitFiles(
      'dirs',
      { 'apps/api': null, 'apps/db/cm.yaml': cm('dirs-db') },
      'api out, db in',
    );
    await eventually(
      'dirs-db in, dirs-api out with its ConfigMap',
      async () =>
        (await configMap('dirs-db'))?.data?.v === '1' &&
        (await application('dirs-api')) === undefined &&
        (await configMap('dirs-api')) === undefined
          ? true
          : undefined,
      60_000,
    );
    expect(await names(ownedBy('dirs'))).toEqual(['dirs-db', 'dirs-web']);

    // A hand edit of a generated Application is put back (policy sync).
    await client.patch(APPLICATION, ns.name, 'dirs-web', { spec: { source: { path: 'apps/db' } } });
    await eventually('the edit reverted', async () =>
      (await application('dirs-web'))?.spec.source?.path === 'apps/web' ? true : undefined,
    );

    // Deleting the set: the garbage collector deletes its Applications, their finalizer what they deployed.
    await client.request(
      'DELETE',
      `/apis/kube-actions.dev/v1alpha1/namespaces/${ns.name}/applicationsets/dirs`,
    );
    await eventually(
      'the Applications and their ConfigMaps gone',
      async () =>
        (await names(ownedBy('dirs'))).length === 0 &&
        (await configMap('dirs-web')) === undefined &&
        (await configMap('dirs-db')) === undefined
          ? true
          : undefined,
      60_000,
    );
  });

  test('git files (fasttemplate): one Application per object; a broken file is reported and deletes nothing', async () => {
    await server.createRepo('files', {
      'clusters/eu/config.yaml': 'cluster:\n  name: eu\n  size: "2"\n',
      'clusters/us/config.json':
        '[{"cluster": {"name": "us-east", "size": "3"}}, {"cluster": {"name": "us-west", "size": "1"}}]',
      'deploy/cm.yaml': cm('files-cm'),
    });
    await createSet('files', {
      generators: [{ git: { repoURL: server.url('files'), files: [{ path: 'clusters/**/config.*' }] } }],
      template: {
        metadata: {
          name: 'files-{{cluster.name}}',
          annotations: { size: '{{cluster.size}}', dir: '{{path.basename}}' },
        },
        spec: {
          source: { repoURL: server.url('files'), targetRevision: 'main', path: 'deploy' },
          destination: { namespace: ns.name },
        },
      },
    });
    await eventually(
      'three Applications',
      async () => ((await names(ownedBy('files'))).length === 3 ? true : undefined),
      60_000,
    );
    expect(await names(ownedBy('files'))).toEqual(['files-eu', 'files-us-east', 'files-us-west']);
    expect((await application('files-us-west'))?.metadata.annotations).toEqual({ size: '1', dir: 'us' });

    await server.commitFiles('files', { 'clusters/us/config.json': '[{"cluster": ' }, 'broken');
    const error = await eventually(
      'the error reported',
      async () => {
        const c = await condition('files', 'ErrorOccurred');
        return c?.status === 'True' ? c : undefined;
      },
      60_000,
    );
    expect(error.message).toMatch(/clusters\/us\/config\.json: not YAML or JSON/);
    expect((await condition('files', 'ParametersGenerated'))?.status).toBe('False');
    // Nothing was deleted: the broken file's Applications are still there.
    expect(await names(ownedBy('files'))).toEqual(['files-eu', 'files-us-east', 'files-us-west']);
  });

  test('list with create-only: nothing updated or deleted; deleting the set orphans its Applications', async () => {
    await server.createRepo('list', { 'cm.yaml': cm('list-cm') });
    await createSet('list', {
      syncPolicy: { applicationsSync: 'create-only', preserveResourcesOnDeletion: true },
      generators: [{ list: { elements: [{ env: 'dev' }, { env: 'prod' }] } }],
      template: {
        metadata: { name: 'list-{{env}}' },
        spec: {
          source: { repoURL: server.url('list'), targetRevision: 'main' },
          destination: { namespace: ns.name },
        },
      },
    });
    await eventually('two Applications', async () =>
      (await names(ownedBy('list'))).length === 2 ? true : undefined,
    );
    expect((await application('list-dev'))?.metadata.finalizers).toBeUndefined();
    expect((await appset('list'))?.metadata.finalizers).toEqual([ORPHAN_FINALIZER]);

    // Dropping an element deletes nothing under create-only; an edit stays.
    await client.patch(APPLICATIONSET, ns.name, 'list', {
      spec: { generators: [{ list: { elements: [{ env: 'dev' }] } }] },
    });
    await client.patch(APPLICATION, ns.name, 'list-dev', { spec: { source: { path: 'edited' } } });
    await eventually('the set to have seen its new spec', async () => {
      const s = await appset('list');
      return s?.status?.resources?.length === 1 ? true : undefined;
    });
    expect(await names(ownedBy('list'))).toEqual(['list-dev', 'list-prod']);
    expect((await application('list-dev'))?.spec.source?.path).toBe('edited');

    await client.request(
      'DELETE',
      `/apis/kube-actions.dev/v1alpha1/namespaces/${ns.name}/applicationsets/list`,
    );
    await eventually('the set gone', async () => ((await appset('list')) === undefined ? true : undefined));
    const orphans = (await applications()).filter((a) => a.metadata.name.startsWith('list-'));
    expect(orphans.map((a) => [a.metadata.name, a.metadata.ownerReferences ?? []])).toEqual([
      ['list-dev', []],
      ['list-prod', []],
    ]);
  });

  test('refused: an unsupported generator generates nothing and says why', async () => {
    await createSet('clusters', {
      generators: [{ clusters: {} }],
      template: { metadata: { name: 'c-{{name}}' }, spec: { destination: { namespace: ns.name } } },
    });
    const error = await eventually('the error reported', async () => {
      const c = await condition('clusters', 'ErrorOccurred');
      return c?.status === 'True' ? c : undefined;
    });
    expect(error.message).toBe(
      'the clusters generator is not supported (supported: list, git directories, git files)',
    );
    expect(await names(ownedBy('clusters'))).toEqual([]);
  });
});

describe('app of apps', () => {
  test('an Application deploying Applications: each child syncs; removing one from Git prunes it and, by its finalizer, what it deployed', async () => {
    await server.createRepo('children', { 'a/cm.yaml': cm('child-a-cm'), 'b/cm.yaml': cm('child-b-cm') });
    const child = (name: string, path: string) => `apiVersion: kube-actions.dev/v1alpha1
kind: Application
metadata:
  name: ${name}
  finalizers: [resources-finalizer.argocd.argoproj.io]
spec:
  source: {repoURL: "${server.url('children')}", targetRevision: main, path: ${path}}
  destination: {namespace: ${ns.name}}
  syncPolicy: {automated: {prune: true}}
`;
    await server.createRepo('root', {
      'apps/child-a.yaml': child('child-a', 'a'),
      'apps/child-b.yaml': child('child-b', 'b'),
    });
    await client.create(APPLICATION, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Application',
      metadata: { name: 'root', namespace: ns.name },
      spec: {
        source: { repoURL: server.url('root'), targetRevision: 'main', path: 'apps' },
        destination: { namespace: ns.name },
        syncPolicy: { automated: { prune: true } },
      },
    });
    await eventually(
      'both children deployed their ConfigMaps',
      async () => ((await configMap('child-a-cm')) && (await configMap('child-b-cm')) ? true : undefined),
      60_000,
    );
    const root = await eventually(
      'root Synced and Healthy',
      async () => {
        const app = await application('root');
        return app?.status?.sync?.status === 'Synced' && app.status.health?.status === 'Healthy'
          ? app
          : undefined;
      },
      60_000,
    );
    expect(root.status?.resources?.map((r) => [r.kind, r.name]).sort()).toEqual([
      ['Application', 'child-a'],
      ['Application', 'child-b'],
    ]);

    await server.commitFiles('root', { 'apps/child-b.yaml': null }, 'child-b retired');
    await eventually(
      'child-b pruned with its ConfigMap; child-a kept',
      async () =>
        (await application('child-b')) === undefined && (await configMap('child-b-cm')) === undefined
          ? true
          : undefined,
      60_000,
    );
    expect(await configMap('child-a-cm')).toBeDefined();
    expect((await application('root'))?.status?.sync?.status).toBe('Synced');
  });
});
