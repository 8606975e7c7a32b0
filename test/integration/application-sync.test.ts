// The Application reconciler against the real control plane and a real git server: each test
// commits to a repository, reconciles, and checks the cluster and the Application's status.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ResourceManager } from '../../src/core/kube/apply.ts';
import { RESTMapper } from '../../src/core/kube/discovery.ts';
import { RepoCache } from '../../src/core/gitops/repo-cache.ts';
import { KubeClient, isNotFound } from '../../src/core/kube/client.ts';
import { silentLogger } from '../../src/controller/runtime/log.ts';
import { LiveObjects, managedInformers } from '../../src/controller/sync/live.ts';
import { ApplicationReconciler } from '../../src/controller/sync/reconciler.ts';
import { ManifestSource } from '../../src/controller/sync/source.ts';
import { APPLICATION, type Application } from '../../src/controller/sync/types.ts';
import { installCRDs } from '../cluster/crds.ts';
import { GitServer } from '../cluster/git-server.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const ns = useTestNamespace('appsync');
let server: GitServer;
let client: KubeClient;
let informers: ReturnType<typeof managedInformers>;
let reconciler: ApplicationReconciler;
let source: ManifestSource;
let repos: RepoCache;
let cacheDir: string;

const CONFIGMAP = (name: string, data: Record<string, string>) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n${Object.entries(data)
    .map(([k, v]) => `  ${k}: "${v}"`)
    .join('\n')}\n`;

const DEPLOYMENT = (name: string, image: string) => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
spec:
  replicas: 2
  selector:
    matchLabels: {app: ${name}}
  template:
    metadata:
      labels: {app: ${name}}
    spec:
      containers:
        - name: main
          image: ${image}
`;

beforeAll(async () => {
  await installCRDs(ns.kc);
  server = await GitServer.start();
  cacheDir = await mkdtemp(join(tmpdir(), 'appsync-cache-'));
  client = new KubeClient(ns.kc);
  const mapper = new RESTMapper(client);
  const resources = new ResourceManager(client, mapper);
  repos = new RepoCache({ dir: cacheDir, refreshIntervalMs: 0 });
  source = new ManifestSource(repos);
  informers = managedInformers(client);
  const live = new LiveObjects({ informer: informers.informer });
  reconciler = new ApplicationReconciler({
    client,
    resources,
    mapper,
    repos,
    source,
    live,
    logger: silentLogger,
    getApplication: (req) => getApp(req.name),
    progressingRequeueMs: 200,
    waveTimeoutMs: 60_000,
  });
});

afterAll(async () => {
  await informers?.stop();
  await client?.close();
  await server?.stop();
  await rm(cacheDir, { recursive: true, force: true });
});

async function getApp(name: string): Promise<Application | undefined> {
  try {
    return await client.get<Application>(APPLICATION, ns.name, name);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

async function createApp(
  name: string,
  repo: string,
  spec: Partial<Application['spec']> & { path?: string } = {},
): Promise<void> {
  const { path, ...rest } = spec;
  await client.create(APPLICATION, {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'Application',
    metadata: { name, namespace: ns.name },
    spec: {
      project: 'default',
      source: { repoURL: server.url(repo), targetRevision: 'main', path: path ?? '.' },
      destination: { server: 'https://kubernetes.default.svc', namespace: ns.name },
      syncPolicy: { automated: { prune: true, selfHeal: true } },
      ...rest,
    },
  });
}

/** Reconciles `name` until `until` holds for its status (each pass as the controller would run it). */
async function reconcileUntil(
  name: string,
  until: (app: Application) => boolean,
  what: string,
): Promise<Application> {
  try {
    return await eventually(
      what,
      async () => {
        await reconciler.reconcile({ namespace: ns.name, name });
        const app = await getApp(name);
        return app && until(app) ? app : undefined;
      },
      60_000,
    );
  } catch (err) {
    // Say where it stood: the status is the whole story of a reconcile.
    const status = JSON.stringify((await getApp(name))?.status ?? null, null, 1);
    throw new Error(`${(err as Error).message}\nlast status: ${status.slice(0, 4000)}`, { cause: err });
  }
}

const synced = (revision: string) => (app: Application) =>
  app.status?.sync?.status === 'Synced' && app.status.sync.revision === revision;

async function configMap(name: string): Promise<
  | {
      data?: Record<string, string>;
      metadata: { labels?: Record<string, string>; annotations?: Record<string, string> };
    }
  | undefined
> {
  try {
    return await client.get(CM, ns.name, name);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}
const CM = { apiVersion: 'v1', resource: 'configmaps' };

describe('Application sync', () => {
  test('a plain directory syncs, reports Synced/Healthy, and a deleted file is pruned', async () => {
    await server.createRepo('plain', {
      'app/settings.yaml': CONFIGMAP('settings', { color: 'blue' }),
      'app/extra.yaml': CONFIGMAP('extra', { a: '1' }),
      'app/web.yaml': DEPLOYMENT('web', 'registry.example/web:1.0'),
      'app/README.md': 'not a manifest\n',
    });
    const first = await server.revParse('plain');
    await createApp('plain', 'plain', { path: 'app' });
    const app = await reconcileUntil(
      'plain',
      (a) => synced(first)(a) && a.status?.health?.status === 'Healthy',
      'plain app Synced and Healthy',
    );
    expect((await configMap('settings'))?.data).toEqual({ color: 'blue' });
    const cm = await configMap('extra');
    expect(cm?.metadata.labels?.['kube-actions.dev/instance']).toBe('plain');
    expect(cm?.metadata.annotations?.['kube-actions.dev/tracking-id']).toBe(
      `${ns.name}_plain:/ConfigMap:${ns.name}/extra`,
    );
    expect(app.status?.resources?.map((r) => `${r.kind}/${r.name}`).sort()).toEqual([
      'ConfigMap/extra',
      'ConfigMap/settings',
      'Deployment/web',
    ]);
    expect(app.status?.history?.map((h) => h.revision)).toEqual([first]);

    const second = await server.commitFiles('plain', { 'app/extra.yaml': null }, 'drop extra');
    await reconcileUntil('plain', synced(second), 'the new revision to sync');
    await eventually('extra to be pruned', async () =>
      (await configMap('extra')) === undefined ? true : undefined,
    );
    expect(await configMap('settings')).toBeDefined();
  });

  test('defaulted fields do not cause OutOfSync: an idle reconcile sends no dry-run and writes nothing', async () => {
    const app = await getApp('plain');
    expect(app?.status?.sync?.status).toBe('Synced');
    // Settle: the status written right after a sync may still change once.
    await reconciler.reconcile({ namespace: ns.name, name: 'plain' });
    const settled = await getApp('plain');
    const dryRuns = reconciler.comparer.dryRuns;
    const rv = settled!.metadata.resourceVersion;
    const renders = source.renders;
    for (let i = 0; i < 3; i++) await reconciler.reconcile({ namespace: ns.name, name: 'plain' });
    expect(reconciler.comparer.dryRuns).toBe(dryRuns);
    expect(source.renders).toBe(renders);
    const after = await getApp('plain');
    // On failure, show what changed.
    expect({ rv: after!.metadata.resourceVersion, status: after!.status }).toEqual({
      rv,
      status: settled!.status,
    });
  });

  test('drift on a managed object is self-healed', async () => {
    await client.patch(CM, ns.name, 'settings', { data: { color: 'red' } });
    await eventually('the watch to see the drift and the reconcile to undo it', async () => {
      await reconciler.reconcile({ namespace: ns.name, name: 'plain' });
      return (await configMap('settings'))?.data?.color === 'blue' ? true : undefined;
    });
  });

  test('invalid YAML: Degraded with the real error, nothing applied and nothing pruned', async () => {
    const before = (await getApp('plain'))!.status!.sync!.revision!;
    const broken = await server.commitFiles(
      'plain',
      {
        'app/settings.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings\n',
        'app/new.yaml': CONFIGMAP('new', { x: '1' }),
      },
      'broken yaml',
    );
    const app = await reconcileUntil('plain', (a) => a.status?.health?.status === 'Degraded', 'Degraded');
    expect(app.status?.health?.message).toMatch(/app\/settings\.yaml/);
    expect(app.status?.conditions?.map((c) => c.type)).toContain('ComparisonError');
    expect(app.status?.sync?.revision).toBe(before);
    expect(broken).not.toBe(before);
    expect(await configMap('new')).toBeUndefined();
    expect(await configMap('settings')).toBeDefined();
    expect(
      (
        await client.get<{ metadata: { name: string } }>(
          { apiVersion: 'apps/v1', resource: 'deployments' },
          ns.name,
          'web',
        )
      ).metadata.name,
    ).toBe('web');
  });

  test('an empty render does not prune (allowEmpty is false)', async () => {
    const empty = await server.commitFiles(
      'plain',
      { 'app/settings.yaml': null, 'app/web.yaml': null, 'app/new.yaml': null },
      'empty the app',
    );
    const app = await reconcileUntil(
      'plain',
      (a) =>
        a.status?.conditions?.some((c) => c.type === 'SyncError' && /rendered no objects/.test(c.message)) ??
        false,
      'a SyncError about the empty render',
    );
    expect(app.status?.sync?.status).toBe('OutOfSync');
    expect(app.status?.sync?.revision).toBe(empty);
    expect(await configMap('settings')).toBeDefined();
  });

  test('a server-side dry-run failure applies nothing', async () => {
    await server.createRepo('dryrun', {
      'a.yaml': CONFIGMAP('dryrun-ok', { a: '1' }),
      'b.yaml':
        'apiVersion: v1\nkind: Service\nmetadata:\n  name: bad-port\nspec:\n  ports:\n    - port: 700000\n',
    });
    await createApp('dryrun', 'dryrun');
    const app = await reconcileUntil(
      'dryrun',
      (a) => a.status?.operationState?.phase === 'Failed',
      'a failed sync',
    );
    expect(app.status?.operationState?.message).toMatch(/Service "bad-port".*700000|port/);
    expect(await configMap('dryrun-ok')).toBeUndefined();
  });

  test('a kustomize overlay and a Helm chart sync from git', async () => {
    await server.createRepo('multi', {
      'kustomize/base/kustomization.yaml': 'resources:\n  - cm.yaml\n',
      'kustomize/base/cm.yaml': CONFIGMAP('kcm', { from: 'base' }),
      'kustomize/overlay/kustomization.yaml':
        'resources:\n  - ../base\nnamePrefix: prod-\nconfigMapGenerator:\n  - name: gen\n    literals: [mode=prod]\n',
      'chart/Chart.yaml': 'apiVersion: v2\nname: demo\nversion: 0.1.0\n',
      'chart/values.yaml': 'greeting: hello\n',
      'chart/templates/cm.yaml':
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\ndata:\n  greeting: {{ .Values.greeting | quote }}\n',
    });
    const rev = await server.revParse('multi');
    await createApp('kust', 'multi', { path: 'kustomize/overlay' });
    await createApp('helm', 'multi', {
      path: 'chart',
      source: {
        repoURL: server.url('multi'),
        targetRevision: 'main',
        path: 'chart',
        helm: { values: 'greeting: hi\n' },
      },
    });
    const kust = await reconcileUntil('kust', synced(rev), 'kustomize app synced');
    expect(kust.status?.sourceType).toBe('kustomize');
    expect((await configMap('prod-kcm'))?.data).toEqual({ from: 'base' });
    const gen = kust.status!.resources!.find((r) => r.name.startsWith('prod-gen-'));
    expect(gen).toBeDefined();
    const helm = await reconcileUntil('helm', synced(rev), 'helm app synced');
    expect(helm.status?.sourceType).toBe('helm');
    expect((await configMap('helm-greeting'))?.data).toEqual({ greeting: 'hi' });
  });

  test('sync waves and hooks run in order: PreSync, waves -1 then 1, PostSync; hook delete policies apply', async () => {
    const job = (name: string, annotations: Record<string, string>, generate = false) => `apiVersion: batch/v1
kind: Job
metadata:
  ${generate ? 'generateName' : 'name'}: ${name}
  annotations:
${Object.entries(annotations)
  .map(([k, v]) => `    ${k}: ${v}`)
  .join('\n')}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: registry.example/tool:1
`;
    const waved = (name: string, wave: string) =>
      CONFIGMAP(name, { w: wave }).replace(
        `name: ${name}\n`,
        `name: ${name}\n  annotations:\n    argocd.argoproj.io/sync-wave: "${wave}"\n`,
      );
    await server.createRepo('waves', {
      'second.yaml': waved('second', '1'),
      'first.yaml': waved('first', '-1'),
      'migrate.yaml': job('migrate', {
        'argocd.argoproj.io/hook': 'PreSync',
        'argocd.argoproj.io/hook-delete-policy': 'HookSucceeded',
      }),
      'notify.yaml': job('notify-', { 'argocd.argoproj.io/hook': 'PostSync' }, true),
    });
    const rev = await server.revParse('waves');
    await createApp('waves', 'waves');
    const app = await reconcileUntil(
      'waves',
      (a) => a.status?.operationState?.phase === 'Succeeded' && synced(rev)(a),
      'waves synced',
    );
    const order = app.status!.operationState!.syncResult!.resources.map(
      (r) => `${r.syncPhase}:${r.kind}/${r.name.replace(/-[0-9a-f]{7}-postsync-\d+$/, '-*')}`,
    );
    expect(order).toEqual([
      'PreSync:Job/migrate',
      'Sync:ConfigMap/first',
      'Sync:ConfigMap/second',
      'PostSync:Job/notify-*',
    ]);
    expect(
      app
        .status!.operationState!.syncResult!.resources.filter((r) => r.kind === 'Job')
        .map((r) => r.hookPhase),
    ).toEqual(['Succeeded', 'Succeeded']);
    // HookSucceeded: the migrate Job is gone; the PostSync Job (default BeforeHookCreation) stays.
    const jobs = { apiVersion: 'batch/v1', resource: 'jobs' };
    await eventually('migrate to be deleted', async () =>
      (await client.get(jobs, ns.name, 'migrate').then(
        () => false,
        (e: unknown) => isNotFound(e),
      ))
        ? true
        : undefined,
    );
    const list = await client.request<{ items: { metadata: { name: string } }[] }>(
      'GET',
      `/apis/batch/v1/namespaces/${ns.name}/jobs`,
    );
    expect(list.items.map((j) => j.metadata.name)).toEqual([
      expect.stringMatching(/^notify-[0-9a-f]{7}-postsync-\d+$/),
    ]);
  });

  test("deleting an Application with Argo CD's resources finalizer deletes what it managed, and only that", async () => {
    await server.createRepo('cascade', {
      'a.yaml': CONFIGMAP('cascade-a', { a: '1' }),
      'b.yaml': CONFIGMAP('cascade-b', { b: '1' }),
    });
    const rev = await server.revParse('cascade');
    await client.create(APPLICATION, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Application',
      metadata: {
        name: 'cascade',
        namespace: ns.name,
        finalizers: ['resources-finalizer.argocd.argoproj.io'],
      },
      spec: {
        source: { repoURL: server.url('cascade'), targetRevision: 'main' },
        destination: { namespace: ns.name },
        syncPolicy: { automated: {} },
      },
    });
    await reconcileUntil('cascade', synced(rev), 'cascade synced');
    // Someone else's ConfigMap with the same label but no tracking id of ours survives.
    await client.create(CM, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'bystander', namespace: ns.name, labels: { 'kube-actions.dev/instance': 'cascade' } },
    });
    await client.delete(APPLICATION, ns.name, 'cascade');
    await eventually('the application to be gone', async () => {
      await reconciler.reconcile({ namespace: ns.name, name: 'cascade' });
      return (await getApp('cascade')) === undefined ? true : undefined;
    });
    expect(await configMap('cascade-a')).toBeUndefined();
    expect(await configMap('cascade-b')).toBeUndefined();
    expect(await configMap('bystander')).toBeDefined();
  });

  test('a dry-run operation applies nothing and leaves history alone; a Skip object is never pruned', async () => {
    await server.createRepo('dry', {
      'a.yaml': CONFIGMAP('dry-a', { a: '1' }),
      'b.yaml': CONFIGMAP('dry-b', { b: '1' }),
    });
    await client.create(APPLICATION, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Application',
      metadata: { name: 'dry', namespace: ns.name },
      spec: {
        source: { repoURL: server.url('dry'), targetRevision: 'main' },
        destination: { namespace: ns.name },
      },
      operation: { sync: { dryRun: true }, initiatedBy: { username: 'test' } },
    });
    const dry = await reconcileUntil(
      'dry',
      (a) => a.status?.operationState?.phase === 'Succeeded' && !a.operation,
      'the dry run',
    );
    expect(dry.status?.operationState?.message).toBe('dry run: 2 object(s) would be applied, 0 pruned');
    expect(dry.status?.history ?? []).toEqual([]);
    expect(await configMap('dry-a')).toBeUndefined();

    await client.patch(APPLICATION, ns.name, 'dry', { operation: { sync: { prune: true } } });
    const rev = await server.revParse('dry');
    await reconcileUntil('dry', (a) => synced(rev)(a) && !a.operation, 'the real sync');
    expect(await configMap('dry-a')).toBeDefined();
    // dry-b is marked Skip in Git: it is no longer applied, and not pruned either.
    const skip = await server.commitFiles(
      'dry',
      {
        'b.yaml': CONFIGMAP('dry-b', { b: '2' }).replace(
          'name: dry-b\n',
          'name: dry-b\n  annotations:\n    argocd.argoproj.io/hook: Skip\n',
        ),
      },
      'skip b',
    );
    await client.patch(APPLICATION, ns.name, 'dry', { operation: { sync: { prune: true } } });
    await reconcileUntil(
      'dry',
      (a) => a.status?.operationState?.syncResult?.revision === skip && !a.operation,
      'the sync with Skip',
    );
    expect((await configMap('dry-b'))?.data).toEqual({ b: '1' });
  });
});
