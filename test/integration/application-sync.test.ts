// The Application controller against the real control plane and a real git server, run as it
// runs in the cluster (a Manager: work queue, informers, the controller's own requeues). Each test
// commits to a repository, waits for the cluster and the Application's status to show the outcome,
// and never calls the reconciler itself. The poll interval is an hour, so whatever happens within
// a test (a retry, a self-heal after its backoff, a wave that times out) comes from the requeues
// and watches the controller claims, never from polling; a commit is picked up through Argo CD's
// refresh annotation. A restart is a fresh Manager over the same cluster and Git: whatever it must
// know of a sync in progress or of past self-heals, it can only read from the status.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeClient, isNotFound } from '../../src/core/kube/client.ts';
import { Logger, silentLogger } from '../../src/controller/runtime/log.ts';
import { Manager } from '../../src/controller/runtime/manager.ts';
import {
  setupApplicationController,
  type ApplicationController,
  type ApplicationControllerOptions,
} from '../../src/controller/sync/controller.ts';
import { SELF_HEAL_BACKOFF } from '../../src/controller/sync/policy.ts';
import { track } from '../../src/controller/sync/source.ts';
import {
  APPLICATION,
  REFRESH_ANNOTATION,
  type Application,
  type OperationState,
} from '../../src/controller/sync/types.ts';
import type { KubeResource } from '../../src/core/kube/resource.ts';
import { installCRDs } from '../cluster/crds.ts';
import { ChartRepo, pushCharts } from '../cluster/chart-repo.ts';
import { OciRegistry } from '../cluster/registry.ts';
import { GitServer } from '../cluster/git-server.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

/** The shared controller's namespace; tests that stop, restart or configure one get their own. */
const ns = useTestNamespace('appsync');
const idleNs = useTestNamespace('appsync-idle');
const healNs = useTestNamespace('appsync-heal');
const restartNs = useTestNamespace('appsync-restart');
const timeoutNs = useTestNamespace('appsync-timeout');
const onceNs = useTestNamespace('appsync-once');
let server: GitServer;
let client: KubeClient;
let cacheRoot: string;
let main: Running;
/** Namespaces a test made as an Application's destination, deleted at the end. */
const extraNamespaces: string[] = [];

const CM = { apiVersion: 'v1', resource: 'configmaps' };
const JOBS = { apiVersion: 'batch/v1', resource: 'jobs' };
const NAMESPACES = { apiVersion: 'v1', resource: 'namespaces', namespaced: false };

interface Running {
  manager: Manager;
  apps: ApplicationController;
  stop: () => Promise<void>;
}

/**
 * The controller process for the Applications of `namespace`: a fresh Manager with an empty cache
 * directory, as a restarted pod has, so all it knows comes from the cluster and from Git.
 */
async function startController(
  namespace: string,
  options: Partial<ApplicationControllerOptions> = {},
): Promise<Running> {
  const manager = new Manager({
    kubeConfig: ns.kc,
    logger: process.env.APP_TEST_LOG ? new Logger({ level: 'debug' }) : silentLogger,
  });
  const apps = setupApplicationController(manager, {
    namespace,
    credentialsNamespace: namespace,
    cacheDir: await mkdtemp(join(cacheRoot, 'controller-')),
    pollIntervalMs: 3_600_000,
    // Shorter than every backoff these tests measure, so a backoff that was not honoured shows
    // (a retry due at once would come 500 ms after the failure, not a whole backoff later).
    progressingRequeueMs: 500,
    waveTimeoutMs: 60_000,
    ...options,
  });
  await manager.start();
  await eventually('the controller synced', () => Promise.resolve(manager.readiness().ready || undefined));
  return { manager, apps, stop: () => manager.stop() };
}

beforeAll(async () => {
  await installCRDs(ns.kc);
  server = await GitServer.start();
  cacheRoot = await mkdtemp(join(tmpdir(), 'appsync-'));
  client = new KubeClient(ns.kc);
  main = await startController(ns.name);
});

afterAll(async () => {
  await main?.stop();
  for (const name of extraNamespaces) await client.delete(NAMESPACES, '', name).catch(() => undefined);
  await client?.close();
  await server?.stop();
  await rm(cacheRoot, { recursive: true, force: true });
});

const CONFIGMAP = (name: string, data: Record<string, string>, annotations: Record<string, string> = {}) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n${
    Object.keys(annotations).length
      ? `  annotations:\n${Object.entries(annotations)
          .map(([k, v]) => `    ${k}: "${v}"`)
          .join('\n')}\n`
      : ''
  }data:\n${Object.entries(data)
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

const BAD_SERVICE = (name: string, port: number) =>
  `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\nspec:\n  ports:\n    - port: ${port}\n`;

/** A PreSync hook Job that runs only once the test resumes it (spec.suspend: false). */
const SUSPENDED_HOOK = (name: string, generate: boolean) => `apiVersion: batch/v1
kind: Job
metadata:
  ${generate ? 'generateName' : 'name'}: ${name}
  annotations:
    argocd.argoproj.io/hook: PreSync
spec:
  suspend: true
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: registry.example/migrate:1
`;

async function getApp(name: string, namespace = ns.name): Promise<Application | undefined> {
  try {
    return await client.get<Application>(APPLICATION, namespace, name);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

interface AppOptions extends Partial<Application['spec']> {
  namespace?: string;
  path?: string;
  /** The Git server the repository is on (the shared one by default). */
  git?: GitServer;
}

/** An Application in `namespace` (the shared one by default) deploying there, automated. */
async function createApp(name: string, repo: string, options: AppOptions = {}): Promise<void> {
  const { namespace = ns.name, path = '.', git = server, ...spec } = options;
  await client.create(APPLICATION, {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'Application',
    metadata: { name, namespace },
    spec: {
      project: 'default',
      source: { repoURL: git.url(repo), targetRevision: 'main', path },
      destination: { server: 'https://kubernetes.default.svc', namespace },
      syncPolicy: { automated: { prune: true, selfHeal: true } },
      ...spec,
    },
  });
}

/** An Application without automated sync, from the repository of its name, created with `operation`. */
async function createManualApp(name: string, operation: Application['operation']): Promise<void> {
  await client.create(APPLICATION, {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'Application',
    metadata: { name, namespace: ns.name },
    spec: {
      source: { repoURL: server.url(name), targetRevision: 'main' },
      destination: { namespace: ns.name },
    },
    operation,
  });
}

/** Asks for a refresh as `argocd app get --refresh` does: the controller looks at Git now. */
async function refresh(name: string, namespace = ns.name): Promise<void> {
  await client.patch(APPLICATION, namespace, name, {
    metadata: { annotations: { [REFRESH_ANNOTATION]: 'normal' } },
  });
}

/** Waits, while the controller runs, until `until` holds for the Application's status. */
async function waitFor(
  name: string,
  until: (app: Application) => boolean,
  what: string,
  namespace = ns.name,
): Promise<Application> {
  try {
    return await eventually(
      what,
      async () => {
        const app = await getApp(name, namespace);
        return app && until(app) ? app : undefined;
      },
      60_000,
    );
  } catch (err) {
    // Say where it stood: the status is the whole story of a reconcile.
    const status = JSON.stringify((await getApp(name, namespace))?.status ?? null, null, 1);
    throw new Error(`${(err as Error).message}\nlast status: ${status.slice(0, 4000)}`, { cause: err });
  }
}

const synced = (revision: string) => (app: Application) =>
  app.status?.sync?.status === 'Synced' && app.status.sync.revision === revision;
const succeeded = (revision: string) => (app: Application) =>
  synced(revision)(app) && app.status?.operationState?.phase === 'Succeeded';

interface LiveConfigMap {
  data?: Record<string, string>;
  metadata: {
    resourceVersion: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    managedFields?: { manager: string; operation: string }[];
  };
}

/**
 * Whether a sync pruned the ConfigMap: gone, or deleted and waiting for the garbage collector
 * (prunes use foreground propagation, as Argo CD's do, so the object stays a moment with a
 * deletionTimestamp and the foregroundDeletion finalizer after the sync has done its part).
 */
async function isPruned(name: string): Promise<boolean> {
  const live = await configMap(name);
  return live === undefined || Boolean((live.metadata as { deletionTimestamp?: string }).deletionTimestamp);
}

async function configMap(name: string, namespace = ns.name): Promise<LiveConfigMap | undefined> {
  try {
    return await client.get<LiveConfigMap>(CM, namespace, name);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** The Jobs an application made, by the instance label every object it creates carries. */
async function jobsOf(
  app: string,
  namespace = ns.name,
): Promise<{ metadata: { name: string; uid: string } }[]> {
  const list = await client.request<{ items: { metadata: { name: string; uid: string } }[] }>(
    'GET',
    `/apis/batch/v1/namespaces/${namespace}/jobs`,
    { query: { labelSelector: `kube-actions.dev/instance=${app}` } },
  );
  return list.items;
}

/** The last operation's results as `<status or hook phase>:<syncPhase>:<Kind>/<name>`, in the order they happened. */
function results(app: Application): string[] {
  return (app.status?.operationState?.syncResult?.resources ?? []).map(
    (r) => `${r.hookPhase ?? r.status}:${r.syncPhase}:${r.kind}/${r.name}`,
  );
}

const ms = (timestamp: string | undefined) => Date.parse(timestamp ?? '');
const sleep = (msToWait: number) => new Promise((r) => setTimeout(r, msToWait));

/** Reconciles the controller has finished, from its own metrics. */
async function reconciles(c: Running): Promise<number> {
  const text = await c.manager.metrics.render();
  return text
    .split('\n')
    .filter((l) => /^controller_runtime_reconcile_total\{.*controller="application"/.test(l))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

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
    const app = await waitFor(
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
    await refresh('plain');
    const pruned = await waitFor('plain', succeeded(second), 'the new revision to sync');
    expect(results(pruned)).toContain('Pruned:Sync:ConfigMap/extra');
    expect(await isPruned('extra')).toBe(true);
    expect(await configMap('settings')).toBeDefined();
  });

  test('defaulted fields do not cause OutOfSync: idle reconciles send no dry-run, render nothing and write nothing', async () => {
    // Its own controller, polling every 500 ms: it looks at the application twice a second, and
    // its counters count this application alone.
    const c = await startController(idleNs.name, { pollIntervalMs: 500 });
    try {
      // Objects the apiserver fills defaults into (strategy, clusterIP, protocol, ...).
      await server.createRepo('idle', {
        'web.yaml': DEPLOYMENT('idle-web', 'registry.example/web:1.0'),
        'svc.yaml':
          'apiVersion: v1\nkind: Service\nmetadata:\n  name: idle-web\nspec:\n  selector: {app: idle-web}\n  ports: [{port: 80}]\n',
        'cm.yaml': CONFIGMAP('idle-settings', { a: '1' }),
      });
      const rev = await server.revParse('idle');
      await createApp('idle', 'idle', { namespace: idleNs.name });
      await waitFor(
        'idle',
        (a) => succeeded(rev)(a) && a.status?.health?.status === 'Healthy',
        'Synced and Healthy',
        idleNs.name,
      );
      // The status written right after a sync may still change once (the Deployment becoming
      // available); from then on, three reconciles in a row send nothing and write nothing.
      await eventually(
        'three idle reconciles in a row',
        async () => {
          const before = {
            dryRuns: c.apps.reconciler.comparer.dryRuns,
            renders: c.apps.source.renders,
            app: await getApp('idle', idleNs.name),
          };
          const count = await reconciles(c);
          await eventually('three more reconciles', async () =>
            (await reconciles(c)) >= count + 3 ? true : undefined,
          );
          const after = {
            dryRuns: c.apps.reconciler.comparer.dryRuns,
            renders: c.apps.source.renders,
            app: await getApp('idle', idleNs.name),
          };
          const changed = [
            ...(after.dryRuns !== before.dryRuns ? [`${after.dryRuns - before.dryRuns} dry-runs`] : []),
            ...(after.renders !== before.renders ? [`${after.renders - before.renders} renders`] : []),
            ...(after.app?.metadata.resourceVersion !== before.app?.metadata.resourceVersion
              ? [
                  `a write: ${JSON.stringify(before.app?.status).slice(0, 1500)} -> ${JSON.stringify(after.app?.status).slice(0, 1500)}`,
                ]
              : []),
          ];
          if (changed.length) throw new Error(`not idle: ${changed.join('; ')}`);
          return true;
        },
        60_000,
      );
    } finally {
      await c.stop();
    }
  });

  test('a Namespace is applied before the objects in it, the objects of one kind at once; each object is dry-run once, the look after the sync none', async () => {
    // Its own controller, so its dry-run counter counts this application alone. The look after
    // the sync comes 3 s later, time enough for the watch to show what the sync applied.
    const c = await startController(onceNs.name, { progressingRequeueMs: 3000 });
    const inner = `${onceNs.name}-inner`;
    extraNamespaces.push(inner);
    try {
      const files: Record<string, string> = {
        'ns.yaml': `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${inner}\n`,
      };
      // More ConfigMaps than are applied at once (8), in the namespace the same wave creates.
      const names = Array.from({ length: 12 }, (_, i) => `once-${String(i).padStart(2, '0')}`);
      for (const n of names)
        files[`${n}.yaml`] = CONFIGMAP(n, { v: n }).replace(
          'metadata:\n',
          `metadata:\n  namespace: ${inner}\n`,
        );
      await server.createRepo('once', files);
      const rev = await server.revParse('once');
      await createApp('once', 'once', { namespace: onceNs.name });
      const app = await waitFor('once', succeeded(rev), 'the sync', onceNs.name);
      // In plan order, whichever apply finished first; the Namespace before any ConfigMap.
      expect(results(app)).toEqual([
        `Synced:Sync:Namespace/${inner}`,
        ...names.map((n) => `Synced:Sync:ConfigMap/${n}`),
      ]);
      for (const n of names) expect((await configMap(n, inner))?.data).toEqual({ v: n });
      // One dry-run per object, before the sync; the looks after it know from what each apply
      // answered that the object is in sync at that version.
      const objects = names.length + 1;
      expect(c.apps.reconciler.comparer.dryRuns).toBe(objects);
      const count = await reconciles(c);
      // One more look, asked for: it compares again, from the watch and what the sync learnt.
      await refresh('once', onceNs.name);
      await eventually('a look after the sync', async () =>
        (await reconciles(c)) > count ? true : undefined,
      );
      expect(c.apps.reconciler.comparer.dryRuns).toBe(objects);
      expect((await getApp('once', onceNs.name))?.status?.sync?.status).toBe('Synced');
    } finally {
      await c.stop();
    }
  });

  test('ignoreDifferences: an HPA scales a Deployment; the Application stays Synced and its next sync does not reset the replicas (jsonPointers, managedFieldsManagers, jqPathExpressions)', async () => {
    // kube-controller-manager's HPA controller brings replicas up to minReplicas without metrics.
    const files = (name: string, v: string) => ({
      'web.yaml': DEPLOYMENT(name, 'registry.example/web:1.0').replace('replicas: 2', 'replicas: 1'),
      'hpa.yaml': `apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: ${name}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: ${name}}
  minReplicas: 3
  maxReplicas: 5
`,
      'cm.yaml': CONFIGMAP(`${name}-settings`, { v }),
    });
    const rules = {
      'hpa-pointer': [{ group: 'apps', kind: 'Deployment', jsonPointers: ['/spec/replicas'] }],
      'hpa-manager': [
        { group: 'apps', kind: 'Deployment', managedFieldsManagers: ['kube-controller-manager'] },
      ],
      'hpa-jq': [{ group: 'apps', kind: 'Deployment', jqPathExpressions: ['.spec.replicas'] }],
    };
    const DEPLOYMENTS = { apiVersion: 'apps/v1', resource: 'deployments' };
    const replicas = async (name: string) =>
      (await client.get<{ spec: { replicas: number } }>(DEPLOYMENTS, ns.name, name)).spec.replicas;
    for (const [name, ignoreDifferences] of Object.entries(rules)) {
      await server.createRepo(name, files(name, '1'));
      await createApp(name, name, { ignoreDifferences });
    }
    for (const name of Object.keys(rules)) {
      await waitFor(name, succeeded(await server.revParse(name)), `${name} synced`);
      await eventually(`the HPA to scale ${name}`, async () =>
        (await replicas(name)) === 3 ? true : undefined,
      );
    }
    for (const name of Object.keys(rules)) {
      // The scaled Deployment is not drift: no self-heal, still Synced after another look.
      await refresh(name);
      await eventually(`a look at ${name}`, async () =>
        (await getApp(name))?.metadata.annotations?.[REFRESH_ANNOTATION] ? undefined : true,
      );
      expect((await getApp(name))?.status?.sync?.status).toBe('Synced');
      // A sync of a new revision applies the Deployment again, with the live replicas.
      const next = await server.commitFiles(
        name,
        { 'cm.yaml': CONFIGMAP(`${name}-settings`, { v: '2' }) },
        'v2',
      );
      await refresh(name);
      const app = await waitFor(name, succeeded(next), `${name}'s next revision synced`);
      expect(results(app)).toContain(`Synced:Sync:Deployment/${name}`);
      expect(await replicas(name)).toBe(3);
      expect(app.status?.sync?.status).toBe('Synced');
    }
  });

  test('a chart from a Helm repository: a version range picks the newest match; credentials from a repository Secret; an unchanged chart is not downloaded again', async () => {
    const charts = await ChartRepo.start({ auth: { username: 'robot', password: 'chart-secret' } });
    const open = await ChartRepo.start();
    try {
      const web = (version: string) => ({
        name: 'web',
        version,
        templates: { 'cm.yaml': CONFIGMAP('{{ .Release.Name }}-chart', { version }) },
      });
      for (const v of ['1.0.0', '1.1.0', '2.0.0']) await charts.publish(web(v));
      await open.publish(web('3.0.0'));
      const chartApp = (name: string, repoURL: string, targetRevision: string) =>
        createApp(name, 'unused', { source: { repoURL, chart: 'web', targetRevision } });
      await chartApp('chart-range', charts.url, '>=1.0.0 <2.0.0');
      await chartApp('chart-open', open.url, '3.0.0');

      // Without credentials the repository refuses: a clear error, nothing applied.
      const refused = await waitFor(
        'chart-range',
        (a) => a.status?.conditions?.some((c) => c.type === 'ComparisonError') ?? false,
        'the unauthorised repository to be reported',
      );
      const error = refused.status!.conditions!.find((c) => c.type === 'ComparisonError')!.message;
      expect(error).toMatch(/HTTP 401.*repository Secret/);
      expect(error).not.toContain('chart-secret');
      expect(await configMap('chart-range-chart')).toBeUndefined();
      // A public repository needs none; the exact version is the revision.
      const opened = await waitFor('chart-open', succeeded('3.0.0'), 'the public chart synced');
      expect(opened.status?.sync?.revision).toBe('3.0.0');
      expect((await configMap('chart-open-chart'))?.data).toEqual({ version: '3.0.0' });

      await client.create(
        { apiVersion: 'v1', resource: 'secrets' },
        {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: {
            name: 'helm-charts',
            namespace: ns.name,
            labels: { 'argocd.argoproj.io/secret-type': 'repository' },
          },
          stringData: { type: 'helm', url: charts.url, username: 'robot', password: 'chart-secret' },
        },
      );
      await refresh('chart-range');
      await waitFor('chart-range', succeeded('1.1.0'), 'the newest 1.x synced');
      expect((await configMap('chart-range-chart'))?.data).toEqual({ version: '1.1.0' });
      expect(charts.archiveRequests()).toEqual(['/charts/web-1.1.0.tgz']);

      // Looked at again with nothing new: the index is asked for (answered 304), the chart is not.
      const before = charts.requests.length;
      await refresh('chart-range');
      await eventually('the refresh done', async () =>
        (await getApp('chart-range'))?.metadata.annotations?.[REFRESH_ANNOTATION] ? undefined : true,
      );
      expect(charts.requests.slice(before)).toEqual(['/charts/index.yaml']);
      expect(charts.archiveRequests()).toHaveLength(1);

      // A new 1.x release is picked up at the next look.
      await charts.publish(web('1.2.0'));
      await refresh('chart-range');
      await waitFor('chart-range', succeeded('1.2.0'), 'the new release synced');
      expect((await configMap('chart-range-chart'))?.data).toEqual({ version: '1.2.0' });
    } finally {
      await charts.stop();
      await open.stop();
    }
  });

  test('a chart from an OCI registry (helm push): a range lists the tags, credentials from a repository Secret, the chart layer is fetched once per digest', async () => {
    const auth = { username: 'robot', password: 'oci-secret' };
    const registry = await OciRegistry.start({ auth, accessLog: true });
    try {
      const web = (version: string) => ({
        name: 'web',
        version,
        templates: { 'cm.yaml': CONFIGMAP('{{ .Release.Name }}-chart', { version }) },
      });
      // 1.3.0+build.7 goes in as the tag 1.3.0_build.7, as Helm writes `+`.
      await pushCharts(registry.host, 'charts', ['1.0.0', '1.3.0+build.7', '2.0.0'].map(web), auth);
      const repoURL = `oci://${registry.host}/charts`;
      await createApp('oci-range', 'unused', {
        source: { repoURL, chart: 'web', targetRevision: '>=1.0.0, <2.0.0' },
      });

      const refused = await waitFor(
        'oci-range',
        (a) => a.status?.conditions?.some((c) => c.type === 'ComparisonError') ?? false,
        'the unauthorised registry to be reported',
      );
      const error = refused.status!.conditions!.find((c) => c.type === 'ComparisonError')!.message;
      expect(error).toMatch(/401/);
      expect(error).not.toContain('oci-secret');
      expect(await configMap('oci-range-chart')).toBeUndefined();

      const secret = (name: string, url: string) =>
        client.create(
          { apiVersion: 'v1', resource: 'secrets' },
          {
            apiVersion: 'v1',
            kind: 'Secret',
            metadata: {
              name,
              namespace: ns.name,
              labels: { 'argocd.argoproj.io/secret-type': 'repository' },
            },
            stringData: { type: 'helm', enableOCI: 'true', url, ...auth },
          },
        );
      await secret('oci-charts', repoURL);
      await refresh('oci-range');
      const synced = await waitFor('oci-range', succeeded('1.3.0+build.7'), 'the newest 1.x synced');
      expect(synced.status?.sync?.revision).toBe('1.3.0+build.7');
      expect((await configMap('oci-range-chart'))?.data).toEqual({ version: '1.3.0+build.7' });
      const blobs = async () =>
        (await registry.requests()).filter((r) => /^GET \/v2\/charts\/web\/blobs\//.test(r));
      expect(await blobs()).toHaveLength(1);

      // Argo CD's other spelling: no scheme (with enableOCI), an exact version (no tags list).
      const bare = `${registry.host}/charts`;
      await secret('oci-charts-bare', bare);
      const beforeBare = (await registry.requests()).length;
      await createApp('oci-exact', 'unused', {
        source: { repoURL: bare, chart: 'web', targetRevision: '2.0.0' },
      });
      await waitFor('oci-exact', succeeded('2.0.0'), 'the exact version synced');
      expect((await configMap('oci-exact-chart'))?.data).toEqual({ version: '2.0.0' });
      expect((await registry.requests()).slice(beforeBare).filter((r) => r.includes('/tags/list'))).toEqual(
        [],
      );

      // Looked at again with nothing new: tags and manifest are read, the chart is not fetched.
      const fetched = (await blobs()).length;
      const beforeRefresh = (await registry.requests()).length;
      await refresh('oci-range');
      await eventually('the refresh done', async () =>
        (await getApp('oci-range'))?.metadata.annotations?.[REFRESH_ANNOTATION] ? undefined : true,
      );
      expect(await blobs()).toHaveLength(fetched);
      expect((await registry.requests()).slice(beforeRefresh).some((r) => r.includes('/tags/list'))).toBe(
        true,
      );
      // A new 1.x is picked up at the next look.
      await pushCharts(registry.host, 'charts', [web('1.4.0')], auth);
      await refresh('oci-range');
      await waitFor('oci-range', succeeded('1.4.0'), 'the new release synced');
      expect((await configMap('oci-range-chart'))?.data).toEqual({ version: '1.4.0' });
    } finally {
      await registry.stop();
    }
  });

  test("multiple sources: a repository chart with values from a Git ref source ($values/...), and a directory; each source's revision in the status; the last source wins a repeated object; bad refs are clear errors", async () => {
    const charts = await ChartRepo.start();
    try {
      await charts.publish({
        name: 'web',
        version: '1.0.0',
        templates: {
          'cm.yaml':
            'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-web\ndata:\n  color: {{ .Values.color | default "unset" | quote }}\n',
        },
      });
      await server.createRepo('ms-config', {
        'envs/prod.yaml': 'color: blue\n',
        'extra/cm.yaml': CONFIGMAP('ms-extra', { from: 'directory' }),
      });
      const first = await server.revParse('ms-config');
      const sources = (valueFile: string) => [
        { repoURL: charts.url, chart: 'web', targetRevision: '1.0.0', helm: { valueFiles: [valueFile] } },
        { repoURL: server.url('ms-config'), targetRevision: 'main', ref: 'values' },
        { repoURL: server.url('ms-config'), targetRevision: 'main', path: 'extra' },
      ];
      // spec.source (createApp's default, a repository that does not exist) is ignored, as in Argo CD.
      await createApp('ms', 'does-not-exist', { sources: sources('$values/envs/prod.yaml') });
      const app = await waitFor('ms', succeeded(`1.0.0,${first},${first}`), 'the three sources synced');
      expect(app.status?.sync?.revisions).toEqual(['1.0.0', first, first]);
      expect(app.status?.sync?.comparedTo?.sources).toHaveLength(3);
      expect(app.status?.sourceTypes).toEqual(['helm', 'directory']);
      expect(app.status?.operationState?.syncResult?.revisions).toEqual(['1.0.0', first, first]);
      expect(app.status?.operationState?.operation.sync?.revisions).toEqual(['1.0.0', first, first]);
      expect((await configMap('ms-web'))?.data).toEqual({ color: 'blue' });
      expect((await configMap('ms-extra'))?.data).toEqual({ from: 'directory' });

      // A commit to the values only: the chart renders with them; history keeps each revision.
      const second = await server.commitFiles('ms-config', { 'envs/prod.yaml': 'color: green\n' }, 'green');
      await refresh('ms');
      const green = await waitFor('ms', succeeded(`1.0.0,${second},${second}`), 'the new values synced');
      expect((await configMap('ms-web'))?.data).toEqual({ color: 'green' });
      expect(green.status?.history?.map((h) => h.revisions)).toEqual([
        ['1.0.0', first, first],
        ['1.0.0', second, second],
      ]);

      // The directory now renders the chart's object too: the last source's copy is applied.
      const third = await server.commitFiles(
        'ms-config',
        { 'extra/web.yaml': CONFIGMAP('ms-web', { color: 'from-directory' }) },
        'repeat',
      );
      await refresh('ms');
      const repeated = await waitFor(
        'ms',
        succeeded(`1.0.0,${third},${third}`),
        'the repeated object synced',
      );
      expect((await configMap('ms-web'))?.data).toEqual({ color: 'from-directory' });
      expect(repeated.status?.conditions?.find((c) => c.type === 'RepeatedResourceWarning')?.message).toMatch(
        /ConfigMap.*ms-web/,
      );
      expect(repeated.status?.resources?.filter((r) => r.name === 'ms-web')).toHaveLength(1);

      // A ref no source has, and a path out of the ref's checkout: clear errors, nothing applied.
      await createApp('ms-typo', 'does-not-exist', { sources: sources('$value/envs/prod.yaml') });
      await createApp('ms-escape', 'does-not-exist', { sources: sources('$values/../../../../etc/passwd') });
      const typo = await waitFor(
        'ms-typo',
        (a) => a.status?.conditions?.some((c) => c.type === 'InvalidSpecError') ?? false,
        'the unknown ref reported',
      );
      expect(typo.status?.conditions?.find((c) => c.type === 'InvalidSpecError')?.message).toBe(
        'spec.sources[0].helm.valueFiles: $value/envs/prod.yaml names no source with ref: value',
      );
      const escape = await waitFor(
        'ms-escape',
        (a) => a.status?.conditions?.some((c) => c.type === 'ComparisonError') ?? false,
        'the escaping values file reported',
      );
      expect(escape.status?.conditions?.find((c) => c.type === 'ComparisonError')?.message).toMatch(
        /rendering source 1: chart web at 1\.0\.0 failed: .*values file \$values\/\.\.\/.*outside/,
      );
      expect(await configMap('ms-typo-web')).toBeUndefined();
      expect(await configMap('ms-escape-web')).toBeUndefined();
    } finally {
      await charts.stop();
    }
  });

  test('an object another Application tracks: SharedResourceWarning names it, and FailOnSharedResource=true fails the sync without taking it over', async () => {
    await server.createRepo('share', { 'cm.yaml': CONFIGMAP('shared-cm', { owner: 'first' }) });
    const rev = await server.revParse('share');
    await createApp('share-a', 'share');
    await waitFor('share-a', succeeded(rev), 'the first owner synced');
    await createApp('share-b', 'share', {
      syncPolicy: { automated: { prune: true }, syncOptions: ['FailOnSharedResource=true'] },
    });
    const b = await waitFor(
      'share-b',
      (a) => a.status?.operationState?.phase === 'Failed',
      'the second application to refuse the shared object',
    );
    expect(b.status!.operationState!.message).toMatch(/FailOnSharedResource=true, nothing was applied/);
    const warning = b.status?.conditions?.find((c) => c.type === 'SharedResourceWarning');
    expect(warning?.message).toBe(
      `ConfigMap "shared-cm" in namespace "${ns.name}" is part of application ${ns.name}/share-a`,
    );
    // Still the first application's, and it sees nothing shared.
    expect((await configMap('shared-cm'))?.metadata.annotations?.['kube-actions.dev/tracking-id']).toBe(
      `${ns.name}_share-a:/ConfigMap:${ns.name}/shared-cm`,
    );
    expect(
      (await getApp('share-a'))?.status?.conditions?.some((c) => c.type === 'SharedResourceWarning'),
    ).toBe(false);
  });

  test('drift is self-healed at once, the next drift only after the backoff; the attempts are counted in the status, so a new controller backs off too', async () => {
    let c = await startController(healNs.name);
    try {
      await server.createRepo('heal', { 'cm.yaml': CONFIGMAP('heal-settings', { color: 'blue' }) });
      const rev = await server.revParse('heal');
      await createApp('heal', 'heal', { namespace: healNs.name });
      await waitFor('heal', succeeded(rev), 'the first sync', healNs.name);
      const color = async () => (await configMap('heal-settings', healNs.name))?.data?.color;
      const attempts = (a: Application) => a.status?.operationState?.operation.sync?.autoHealAttemptsCount;
      const healed = (n: number) => (a: Application) =>
        attempts(a) === n && a.status?.operationState?.phase === 'Succeeded';

      // The first heal of a revision is not delayed: the watch on the ConfigMap wakes the app.
      await client.patch(CM, healNs.name, 'heal-settings', { data: { color: 'red' } });
      const heal1 = (await waitFor('heal', healed(1), 'the first heal', healNs.name)).status!.operationState!;
      expect(await color()).toBe('blue');

      // The second waits SELF_HEAL_BACKOFF (2 s) after the first finished; meanwhile the status
      // shows the drift.
      await client.patch(CM, healNs.name, 'heal-settings', { data: { color: 'green' } });
      let sawDrift = false;
      const heal2 = (
        await waitFor(
          'heal',
          (a) => {
            if (attempts(a) === 1 && a.status?.sync?.status === 'OutOfSync') sawDrift = true;
            return healed(2)(a);
          },
          'the second heal',
          healNs.name,
        )
      ).status!.operationState!;
      expect(await color()).toBe('blue');
      expect(sawDrift).toBe(true);
      expect(ms(heal2.startedAt) - ms(heal1.finishedAt)).toBeGreaterThanOrEqual(SELF_HEAL_BACKOFF.durationMs);

      // A controller that has never seen this application, with a backoff long enough to watch
      // it wait: the attempt count it reads from the status makes it wait, not heal at once.
      await c.stop();
      c = await startController(healNs.name, {
        selfHealBackoff: { durationMs: 60_000, factor: 1, maxMs: 60_000 },
      });
      await client.patch(CM, healNs.name, 'heal-settings', { data: { color: 'yellow' } });
      await waitFor('heal', (a) => a.status?.sync?.status === 'OutOfSync', 'the drift noticed', healNs.name);
      await sleep(3000);
      expect(await color()).toBe('yellow');
      expect((await getApp('heal', healNs.name))!.status!.operationState!.startedAt).toBe(heal2.startedAt);

      // And with Argo CD's backoff again, the third heal comes 2 s × 3 after the second.
      await c.stop();
      c = await startController(healNs.name);
      const heal3 = (await waitFor('heal', healed(3), 'the third heal', healNs.name)).status!.operationState!;
      expect(await color()).toBe('blue');
      expect(ms(heal3.startedAt) - ms(heal2.finishedAt)).toBeGreaterThanOrEqual(
        SELF_HEAL_BACKOFF.durationMs * SELF_HEAL_BACKOFF.factor,
      );
    } finally {
      await c.stop();
    }
  });

  test('invalid YAML: Degraded with the real error, nothing applied and nothing pruned', async () => {
    await server.createRepo('broken', {
      'app/settings.yaml': CONFIGMAP('broken-settings', { color: 'blue' }),
      'app/web.yaml': DEPLOYMENT('broken-web', 'registry.example/web:1.0'),
    });
    const before = await server.revParse('broken');
    await createApp('broken', 'broken', { path: 'app' });
    await waitFor('broken', succeeded(before), 'the first sync');
    const broken = await server.commitFiles(
      'broken',
      {
        'app/settings.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: broken-settings\n',
        'app/new.yaml': CONFIGMAP('broken-new', { x: '1' }),
      },
      'broken yaml',
    );
    await refresh('broken');
    const app = await waitFor('broken', (a) => a.status?.health?.status === 'Degraded', 'Degraded');
    expect(app.status?.health?.message).toMatch(/app\/settings\.yaml/);
    expect(app.status?.health?.message).toContain(broken.slice(0, 12));
    expect(app.status?.conditions?.map((c) => c.type)).toContain('ComparisonError');
    expect(app.status?.sync?.revision).toBe(before);
    expect(await configMap('broken-new')).toBeUndefined();
    expect(await configMap('broken-settings')).toBeDefined();
    expect(
      (
        await client.get<{ metadata: { name: string } }>(
          { apiVersion: 'apps/v1', resource: 'deployments' },
          ns.name,
          'broken-web',
        )
      ).metadata.name,
    ).toBe('broken-web');
  });

  test('an empty render does not prune (allowEmpty is false)', async () => {
    await server.createRepo('empty', { 'settings.yaml': CONFIGMAP('empty-settings', { a: '1' }) });
    await createApp('empty', 'empty');
    await waitFor('empty', succeeded(await server.revParse('empty')), 'the first sync');
    const empty = await server.commitFiles('empty', { 'settings.yaml': null }, 'empty the app');
    await refresh('empty');
    const app = await waitFor(
      'empty',
      (a) =>
        a.status?.conditions?.some((c) => c.type === 'SyncError' && /rendered no objects/.test(c.message)) ??
        false,
      'a SyncError about the empty render',
    );
    expect(app.status?.sync?.status).toBe('OutOfSync');
    expect(app.status?.sync?.revision).toBe(empty);
    expect(await configMap('empty-settings')).toBeDefined();
  });

  test('a server-side dry-run failure applies nothing', async () => {
    await server.createRepo('dryrun', {
      'a.yaml': CONFIGMAP('dryrun-ok', { a: '1' }),
      'b.yaml': BAD_SERVICE('bad-port', 700000),
    });
    await createApp('dryrun', 'dryrun');
    const app = await waitFor('dryrun', (a) => a.status?.operationState?.phase === 'Failed', 'a failed sync');
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
      source: {
        repoURL: server.url('multi'),
        targetRevision: 'main',
        path: 'chart',
        helm: { values: 'greeting: hi\n' },
      },
    });
    const kust = await waitFor('kust', synced(rev), 'kustomize app synced');
    expect(kust.status?.sourceType).toBe('kustomize');
    expect((await configMap('prod-kcm'))?.data).toEqual({ from: 'base' });
    const gen = kust.status!.resources!.find((r) => r.name.startsWith('prod-gen-'));
    expect(gen).toBeDefined();
    const helm = await waitFor('helm', synced(rev), 'helm app synced');
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
      CONFIGMAP(name, { w: wave }, { 'argocd.argoproj.io/sync-wave': wave });
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
    const app = await waitFor('waves', succeeded(rev), 'waves synced');
    expect(results(app).map((r) => r.replace(/-[0-9a-f]{7}-postsync-\d+$/, '-*'))).toEqual([
      'Succeeded:PreSync:Job/migrate',
      'Synced:Sync:ConfigMap/first',
      'Synced:Sync:ConfigMap/second',
      'Succeeded:PostSync:Job/notify-*',
    ]);
    // HookSucceeded: the migrate Job is gone; the PostSync Job (default BeforeHookCreation) stays.
    await eventually('migrate to be deleted', async () =>
      (await client.get(JOBS, ns.name, 'migrate').then(
        () => false,
        (e: unknown) => isNotFound(e),
      ))
        ? true
        : undefined,
    );
    expect((await jobsOf('waves')).map((j) => j.metadata.name)).toEqual([
      expect.stringMatching(/^notify-[0-9a-f]{7}-postsync-\d+$/),
    ]);
  });

  test('deleting: PreDelete hooks run first and a failed one keeps the resources; PostDelete hooks run once they are gone; delete policies clean up', async () => {
    const job = (
      name: string,
      hook: string,
      options: { policy?: string; suspend?: boolean; fail?: boolean },
    ) =>
      [
        'apiVersion: batch/v1',
        'kind: Job',
        'metadata:',
        `  ${name.endsWith('-') ? 'generateName' : 'name'}: ${name}`,
        '  annotations:',
        `    argocd.argoproj.io/hook: ${hook}`,
        ...(options.policy ? [`    argocd.argoproj.io/hook-delete-policy: ${options.policy}`] : []),
        'spec:',
        `  suspend: ${options.suspend ? 'true' : 'false'}`,
        '  backoffLimit: 0',
        // A pod no node takes, and a 1 s deadline: the Job fails.
        ...(options.fail ? ['  activeDeadlineSeconds: 1'] : []),
        '  template:',
        '    spec:',
        '      restartPolicy: Never',
        ...(options.fail ? ['      nodeSelector: { kube-actions.dev/no-such-node: "true" }'] : []),
        '      containers:',
        '        - name: main',
        '          image: registry.example/hook:1',
        '',
      ].join('\n');
    const appWithHooks = async (name: string, files: Record<string, string>) => {
      await server.createRepo(name, { 'cm.yaml': CONFIGMAP(`${name}-cm`, { a: '1' }), ...files });
      const rev = await server.revParse(name);
      await client.create(APPLICATION, {
        apiVersion: 'kube-actions.dev/v1alpha1',
        kind: 'Application',
        metadata: { name, namespace: ns.name, finalizers: ['resources-finalizer.argocd.argoproj.io'] },
        spec: {
          source: { repoURL: server.url(name), targetRevision: 'main' },
          destination: { namespace: ns.name },
          syncPolicy: { automated: {} },
        },
      });
      return waitFor(name, synced(rev), `${name} synced`);
    };
    const gone = (name: string) =>
      eventually(
        `${name} to be gone`,
        async () => ((await getApp(name)) === undefined ? true : undefined),
        60_000,
      );

    await appWithHooks('delhooks', {
      'pre.yaml': job('delhooks-pre', 'PreDelete', { policy: 'HookSucceeded', suspend: true }),
      'post.yaml': job('delhooks-post-', 'PostDelete', {}),
    });
    // The controller added Argo CD's finalizers for them; neither hook ran at the sync.
    const finalizers = await eventually('the deletion hooks finalizers', async () => {
      const f = (await getApp('delhooks'))?.metadata.finalizers ?? [];
      return f.length === 4 ? f : undefined;
    });
    expect([...finalizers].sort()).toEqual([
      'post-delete-finalizer.argocd.argoproj.io',
      'post-delete-finalizer.argocd.argoproj.io/cleanup',
      'pre-delete-finalizer.argocd.argoproj.io',
      'resources-finalizer.argocd.argoproj.io',
    ]);
    expect(await jobsOf('delhooks')).toEqual([]);

    await client.delete(APPLICATION, ns.name, 'delhooks');
    await eventually('the PreDelete Job', async () =>
      (await jobsOf('delhooks')).some((j) => j.metadata.name === 'delhooks-pre') ? true : undefined,
    );
    // While it runs, the resources stay, and the PostDelete hook waits.
    await sleep(1500);
    expect(await configMap('delhooks-cm')).toBeDefined();
    expect((await jobsOf('delhooks')).map((j) => j.metadata.name)).toEqual(['delhooks-pre']);
    await client.patch(JOBS, ns.name, 'delhooks-pre', { spec: { suspend: false } });
    await gone('delhooks');
    expect(await configMap('delhooks-cm')).toBeUndefined();
    // HookSucceeded removed the PreDelete Job; the PostDelete one (no policy) ran and is kept.
    const left = await jobsOf('delhooks');
    expect(left.map((j) => j.metadata.name)).toEqual([
      expect.stringMatching(/^delhooks-post-postdelete-\d+$/),
    ]);
    const post = await client.get<{ status?: { succeeded?: number } }>(JOBS, ns.name, left[0]!.metadata.name);
    expect(post.status?.succeeded).toBe(1);

    // A PreDelete hook that fails stops the deletion: reported, the resources kept.
    await appWithHooks('delhooks-fail', {
      'pre.yaml': job('delhooks-fail-pre', 'PreDelete', { fail: true }),
    });
    await eventually('the finalizer', async () =>
      (await getApp('delhooks-fail'))?.metadata.finalizers?.includes(
        'pre-delete-finalizer.argocd.argoproj.io',
      )
        ? true
        : undefined,
    );
    await client.delete(APPLICATION, ns.name, 'delhooks-fail');
    const blocked = await waitFor(
      'delhooks-fail',
      (a) => a.status?.conditions?.some((c) => c.type === 'DeletionError') ?? false,
      'the failed PreDelete hook to be reported',
    );
    expect(blocked.status!.conditions!.find((c) => c.type === 'DeletionError')!.message).toMatch(
      /PreDelete hook Job\/delhooks-fail-pre failed .*resources are kept/,
    );
    expect(await configMap('delhooks-fail-cm')).toBeDefined();
    // Removing the finalizer, as the message says, lets the deletion go on.
    const app = (await getApp('delhooks-fail'))!;
    await client.patch(APPLICATION, ns.name, 'delhooks-fail', {
      metadata: {
        finalizers: app.metadata.finalizers!.filter((f) => f !== 'pre-delete-finalizer.argocd.argoproj.io'),
      },
    });
    await gone('delhooks-fail');
    expect(await configMap('delhooks-fail-cm')).toBeUndefined();
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
    await waitFor('cascade', synced(rev), 'cascade synced');
    // Someone else's ConfigMap with the same label but no tracking id of ours survives.
    await client.create(CM, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'bystander', namespace: ns.name, labels: { 'kube-actions.dev/instance': 'cascade' } },
    });
    await client.delete(APPLICATION, ns.name, 'cascade');
    await eventually('the application to be gone', async () =>
      (await getApp('cascade')) === undefined ? true : undefined,
    );
    expect(await configMap('cascade-a')).toBeUndefined();
    expect(await configMap('cascade-b')).toBeUndefined();
    expect(await configMap('bystander')).toBeDefined();
  });

  test('a selective sync (operation.sync.resources) applies only what it names, runs no hooks and adds no history entry', async () => {
    await server.createRepo('selective', {
      'a.yaml': CONFIGMAP('sel-a', { a: '1' }),
      'b.yaml': CONFIGMAP('sel-b', { b: '1' }),
      'hook.yaml': SUSPENDED_HOOK('sel-hook', false).replace('PreSync', 'PostSync'),
    });
    // As `kube-actions app sync selective --resource :ConfigMap:sel-a` writes it.
    await createManualApp('selective', {
      sync: { resources: [{ group: '', kind: 'ConfigMap', name: 'sel-a' }] },
      initiatedBy: { username: 'test' },
    });
    const app = await waitFor(
      'selective',
      (a) => a.status?.operationState?.phase === 'Succeeded' && !a.operation,
      'the selective sync',
    );
    expect(results(app)).toEqual(['Synced:Sync:ConfigMap/sel-a']);
    expect((await configMap('sel-a'))?.data).toEqual({ a: '1' });
    expect(await configMap('sel-b')).toBeUndefined();
    expect(await jobsOf('selective')).toEqual([]);
    expect(app.status?.history ?? []).toEqual([]);
    // sel-b is still missing: the application is not Synced.
    expect(app.status?.sync?.status).toBe('OutOfSync');
  });

  test('a dry-run operation applies nothing and leaves history alone; a Skip object is never pruned', async () => {
    await server.createRepo('dry', {
      'a.yaml': CONFIGMAP('dry-a', { a: '1' }),
      'b.yaml': CONFIGMAP('dry-b', { b: '1' }),
    });
    await createManualApp('dry', { sync: { dryRun: true }, initiatedBy: { username: 'test' } });
    const dry = await waitFor(
      'dry',
      (a) => a.status?.operationState?.phase === 'Succeeded' && !a.operation,
      'the dry run',
    );
    expect(dry.status?.operationState?.message).toBe('dry run: 2 object(s) would be applied, 0 pruned');
    expect(dry.status?.history ?? []).toEqual([]);
    expect(await configMap('dry-a')).toBeUndefined();

    await client.patch(APPLICATION, ns.name, 'dry', { operation: { sync: { prune: true } } });
    const rev = await server.revParse('dry');
    await waitFor('dry', (a) => synced(rev)(a) && !a.operation, 'the real sync');
    expect(await configMap('dry-a')).toBeDefined();
    // dry-b is marked Skip in Git: it is no longer applied, and not pruned either.
    const skip = await server.commitFiles(
      'dry',
      { 'b.yaml': CONFIGMAP('dry-b', { b: '2' }, { 'argocd.argoproj.io/hook': 'Skip' }) },
      'skip b',
    );
    await client.patch(APPLICATION, ns.name, 'dry', { operation: { sync: { prune: true } } });
    await waitFor(
      'dry',
      (a) => a.status?.operationState?.syncResult?.revision === skip && !a.operation,
      'the sync with Skip',
    );
    expect((await configMap('dry-b'))?.data).toEqual({ b: '1' });
  });

  test.each([
    ['a named PreSync hook', 'resume-named', false],
    ['a generateName PreSync hook', 'resume-gen', true],
  ])(
    'a sync stopped while %s runs is resumed by the next controller: the Job is created once and the sync succeeds',
    async (_what, name, generate) => {
      const namespace = restartNs.name;
      await server.createRepo(name, {
        'cm.yaml': CONFIGMAP(`${name}-cm`, { a: '1' }),
        'hook.yaml': SUSPENDED_HOOK(generate ? `${name}-hook-` : `${name}-hook`, generate),
      });
      const rev = await server.revParse(name);
      // The first controller runs until it is stopped (a shutdown, a lost lease) while the hook
      // runs: the reconcile in flight sees its signal aborted.
      let c = await startController(namespace);
      try {
        await createApp(name, name, { namespace });
        const [job] = await eventually('the hook Job to be created', async () => {
          const jobs = await jobsOf(name, namespace);
          return jobs.length ? jobs : undefined;
        });
        await c.stop();
        expect((await getApp(name, namespace))?.status?.operationState?.phase).toBe('Running');
        expect(await configMap(`${name}-cm`, namespace)).toBeUndefined();
        // A restart takes a while: the next controller comes up in a later second, when a new
        // operation would also name a generateName hook differently (its name ends in the start time).
        await sleep(1100);

        // The hook may finish now; the next controller must wait for that Job, not make another.
        await client.patch(JOBS, namespace, job!.metadata.name, { spec: { suspend: false } });
        c = await startController(namespace);
        const app = await waitFor(name, succeeded(rev), 'the resumed sync to succeed', namespace);
        expect((await jobsOf(name, namespace)).map((j) => j.metadata.uid)).toEqual([job!.metadata.uid]);
        expect(results(app)).toEqual([
          `Succeeded:PreSync:Job/${job!.metadata.name}`,
          `Synced:Sync:ConfigMap/${name}-cm`,
        ]);
        expect((await configMap(`${name}-cm`, namespace))?.data).toEqual({ a: '1' });
      } finally {
        await c.stop();
      }
    },
  );

  test('a wave that times out fails the sync: later phases are not applied, SyncFail hooks run, no retry without syncPolicy.retry', async () => {
    const namespace = timeoutNs.name;
    const onFail = SUSPENDED_HOOK('timeout-cleanup', false)
      .replace('argocd.argoproj.io/hook: PreSync', 'argocd.argoproj.io/hook: SyncFail')
      .replace('  suspend: true\n', '');
    await server.createRepo('timeout', {
      'hook.yaml': SUSPENDED_HOOK('timeout-hook', false),
      'cm.yaml': CONFIGMAP('timeout-cm', { a: '1' }),
      'on-fail.yaml': onFail,
    });
    const c = await startController(namespace, { waveTimeoutMs: 2000 });
    try {
      await createApp('timeout', 'timeout', { namespace });
      const app = await waitFor(
        'timeout',
        (a) => a.status?.operationState?.phase === 'Failed',
        'the sync to fail',
        namespace,
      );
      const op = app.status!.operationState!;
      expect(op.message).toMatch(
        /^PreSync hook job\/timeout-hook failed: timed out after 2s waiting for PreSync hook Job "timeout-hook"/,
      );
      // Found by the controller's requeue, not before the wave's time was up.
      expect(ms(op.finishedAt) - ms(op.startedAt)).toBeGreaterThanOrEqual(2000);
      expect(results(app)).toEqual([
        'Failed:PreSync:Job/timeout-hook',
        'Succeeded:SyncFail:Job/timeout-cleanup',
      ]);
      expect(await configMap('timeout-cm', namespace)).toBeUndefined();
      const after = await waitFor(
        'timeout',
        (a) =>
          a.status?.conditions?.some(
            (cond) => cond.type === 'SyncError' && /not retrying/.test(cond.message),
          ) ?? false,
        'the failure to be reported, not retried',
        namespace,
      );
      expect(after.status!.operationState!.startedAt).toBe(op.startedAt);
    } finally {
      await c.stop();
    }
  });
});

describe('sync options and policy', () => {
  test('CreateNamespace=true creates the destination namespace first (and does not track it); without it the sync fails', async () => {
    const created = `${ns.name}-created`;
    const absent = `${ns.name}-absent`;
    extraNamespaces.push(created, absent);
    await server.createRepo('createns', { 'cm.yaml': CONFIGMAP('createns-cm', { a: '1' }) });
    const rev = await server.revParse('createns');
    const to = (namespace: string) => ({ server: 'https://kubernetes.default.svc', namespace });
    await createApp('createns', 'createns', {
      destination: to(created),
      syncPolicy: { automated: { prune: true }, syncOptions: ['CreateNamespace=true'] },
    });
    await createApp('nocreatens', 'createns', { destination: to(absent) });

    const app = await waitFor('createns', succeeded(rev), 'the sync into a new namespace');
    expect(results(app)).toEqual([
      `Synced:PreSync:Namespace/${created}`,
      'Synced:Sync:ConfigMap/createns-cm',
    ]);
    expect((await configMap('createns-cm', created))?.data).toEqual({ a: '1' });
    // Argo CD creates the namespace but does not manage it: it is neither in the inventory nor
    // labelled as the application's, so it is never pruned.
    expect(app.status?.resources?.map((r) => `${r.kind}/${r.name}`)).toEqual(['ConfigMap/createns-cm']);
    const namespace = await client.get<{ metadata: { labels?: Record<string, string> } }>(
      NAMESPACES,
      '',
      created,
    );
    expect(namespace.metadata.labels?.['kube-actions.dev/instance']).toBeUndefined();

    const refused = await waitFor(
      'nocreatens',
      (a) => a.status?.operationState?.phase === 'Failed',
      'the sync without the namespace to fail',
    );
    expect(refused.status!.operationState!.message).toMatch(new RegExp(`namespaces? "${absent}" not found`));
    await expect(client.get(NAMESPACES, '', absent)).rejects.toThrow();
  });

  test('PruneLast=true prunes after every other wave; by default a prune runs first in its wave', async () => {
    // Two applications, one with the option: a (wave 0) and b (wave 1) stay, old leaves Git.
    const scenario = async (name: string, syncOptions: string[]) => {
      await server.createRepo(name, {
        'a.yaml': CONFIGMAP(`${name}-a`, { v: '1' }),
        'b.yaml': CONFIGMAP(`${name}-b`, { v: '1' }, { 'argocd.argoproj.io/sync-wave': '1' }),
        'old.yaml': CONFIGMAP(`${name}-old`, { v: '1' }),
      });
      await createApp(name, name, { syncPolicy: { automated: { prune: true }, syncOptions } });
      await waitFor(name, succeeded(await server.revParse(name)), 'the first sync');
      const rev = await server.commitFiles(name, { 'old.yaml': null }, 'drop old');
      await refresh(name);
      const app = await waitFor(name, succeeded(rev), 'the sync that prunes');
      expect(await isPruned(`${name}-old`)).toBe(true);
      return results(app);
    };
    expect(await scenario('prunelast', ['PruneLast=true'])).toEqual([
      'Synced:Sync:ConfigMap/prunelast-a',
      'Synced:Sync:ConfigMap/prunelast-b',
      'Pruned:Sync:ConfigMap/prunelast-old',
    ]);
    expect(await scenario('prunefirst', [])).toEqual([
      'Pruned:Sync:ConfigMap/prunefirst-old',
      'Synced:Sync:ConfigMap/prunefirst-a',
      'Synced:Sync:ConfigMap/prunefirst-b',
    ]);
  });

  test('ApplyOutOfSyncOnly=true applies only what differs: an object already in sync is not written at all', async () => {
    // Each application's `same` ConfigMap exists before it, exactly as it would apply it (tracking
    // metadata included), written by another field manager. Applying it would make the
    // controller's field manager a co-owner of its fields, so managedFields show whether it did.
    const scenario = async (name: string, syncOptions: string[]) => {
      await server.createRepo(name, {
        'changed.yaml': CONFIGMAP(`${name}-changed`, { v: '1' }),
        'same.yaml': CONFIGMAP(`${name}-same`, { v: '1' }),
      });
      const owner = { metadata: { name, namespace: ns.name } } as Application;
      const same: KubeResource = {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: `${name}-same`, namespace: ns.name },
        data: { v: '1' },
      };
      const precreated = await client.create(CM, track(owner, same, ns.name), {
        fieldManager: 'someone-else',
      });
      await createApp(name, name, { syncPolicy: { automated: { prune: true }, syncOptions } });
      const app = await waitFor(name, succeeded(await server.revParse(name)), 'the first sync');
      const live = (await configMap(`${name}-same`))!;
      return {
        results: results(app),
        untouched: live.metadata.resourceVersion === precreated.metadata?.resourceVersion,
        managers: live.metadata.managedFields?.map((f) => f.manager).sort(),
      };
    };
    expect(await scenario('outofsync', ['ApplyOutOfSyncOnly=true'])).toEqual({
      results: ['Synced:Sync:ConfigMap/outofsync-changed'],
      untouched: true,
      managers: ['someone-else'],
    });
    // Without the option the same object is applied (and so owned) by the controller.
    expect(await scenario('applyall', [])).toEqual({
      results: ['Synced:Sync:ConfigMap/applyall-changed', 'Synced:Sync:ConfigMap/applyall-same'],
      untouched: false,
      managers: ['kube-actions', 'someone-else'],
    });

    // A later change is applied alone too.
    const sameBefore = (await configMap('outofsync-same'))!.metadata.resourceVersion;
    const rev = await server.commitFiles(
      'outofsync',
      { 'changed.yaml': CONFIGMAP('outofsync-changed', { v: '2' }) },
      'v2',
    );
    await refresh('outofsync');
    const app = await waitFor('outofsync', succeeded(rev), 'the second sync');
    expect(results(app)).toEqual(['Synced:Sync:ConfigMap/outofsync-changed']);
    expect((await configMap('outofsync-changed'))?.data).toEqual({ v: '2' });
    expect((await configMap('outofsync-same'))!.metadata.resourceVersion).toBe(sameBefore);
  });

  test('syncPolicy.retry: a failing sync is retried with the backoff (1 s, then 2 s) up to the limit, then not at all; a new revision starts afresh', async () => {
    await server.createRepo('retry', {
      'cm.yaml': CONFIGMAP('retry-ok', { a: '1' }),
      'svc.yaml': BAD_SERVICE('retry-bad', 700000),
    });
    await createApp('retry', 'retry', {
      syncPolicy: {
        automated: { prune: true, selfHeal: true },
        retry: { limit: 2, backoff: { duration: '1s', factor: 2, maxDuration: '1m' } },
      },
    });
    // Each attempt's final state lasts at least the backoff before the next one replaces it.
    const attempts: OperationState[] = [];
    for (const n of [0, 1, 2]) {
      const app = await waitFor(
        'retry',
        (a) =>
          (a.status?.operationState?.retryCount ?? 0) === n && a.status?.operationState?.phase === 'Failed',
        `attempt ${n + 1} to fail`,
      );
      attempts.push(app.status!.operationState!);
    }
    for (const op of attempts) expect(op.message).toMatch(/failed to apply \(dry run\)[^]*retry-bad/);
    // The backoff is duration × factor^retries after the previous attempt finished.
    expect(ms(attempts[1]!.startedAt) - ms(attempts[0]!.finishedAt)).toBeGreaterThanOrEqual(1000);
    expect(ms(attempts[2]!.startedAt) - ms(attempts[1]!.finishedAt)).toBeGreaterThanOrEqual(2000);

    // The limit is reached: reported, and not tried again, not even after the next backoff (4 s).
    const stopped = await waitFor(
      'retry',
      (a) =>
        a.status?.conditions?.some((c) => c.type === 'SyncError' && /not retrying/.test(c.message)) ?? false,
      'the retries to stop',
    );
    expect(stopped.status!.operationState!.startedAt).toBe(attempts[2]!.startedAt);
    await sleep(Math.max(0, ms(attempts[2]!.finishedAt) + 5000 - Date.now()));
    const later = (await getApp('retry'))!.status!.operationState!;
    expect([later.startedAt, later.retryCount]).toEqual([attempts[2]!.startedAt, 2]);
    expect(await configMap('retry-ok')).toBeUndefined();

    const fixed = await server.commitFiles(
      'retry',
      { 'svc.yaml': BAD_SERVICE('retry-bad', 7000) },
      'fix the port',
    );
    await refresh('retry');
    const app = await waitFor('retry', succeeded(fixed), 'the fixed revision to sync');
    expect(app.status!.operationState!.retryCount).toBeUndefined();
    expect((await configMap('retry-ok'))?.data).toEqual({ a: '1' });
  });

  test('a private repository: a wrong password is a clear ComparisonError that does not contain it; the right one syncs', async () => {
    const TOKEN = 'ghp_the-right-token-0123456789';
    const WRONG = 'ghp_a-wrong-token-9876543210';
    const git = await GitServer.start({ auth: { username: 'x-access-token', password: TOKEN } });
    try {
      await git.createRepo('private', { 'cm.yaml': CONFIGMAP('private-cm', { a: '1' }) });
      const rev = await git.revParse('private');
      const secret = (password: string) => ({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name: 'private-repo',
          namespace: ns.name,
          labels: { 'argocd.argoproj.io/secret-type': 'repository' },
        },
        stringData: { type: 'git', url: git.url('private'), username: 'x-access-token', password },
      });
      const SECRETS = { apiVersion: 'v1', resource: 'secrets' };
      await client.create(SECRETS, secret(WRONG));
      await createApp('private', 'private', { git });

      const failed = await waitFor(
        'private',
        (a) => a.status?.conditions?.some((c) => c.type === 'ComparisonError') ?? false,
        'a ComparisonError',
      );
      const condition = failed.status!.conditions!.find((c) => c.type === 'ComparisonError')!;
      expect(condition.message).toBe(
        `authentication to ${git.url('private')} failed: check the repository credentials`,
      );
      // The server was asked, and refused.
      expect(git.requests.some((r) => r.repo === 'private' && r.status === 401)).toBe(true);
      expect(await configMap('private-cm')).toBeUndefined();
      // Neither password appears anywhere: the status, or the Events about the application.
      // (Events are sent in the background: wait for the one about this failure first.)
      const events = await eventually('the ComparisonError event', async () => {
        const list = await client.request<{
          items: { note?: string; reason?: string; regarding?: { name?: string } }[];
        }>('GET', `/apis/events.k8s.io/v1/namespaces/${ns.name}/events`);
        const failure = (e: (typeof list.items)[number]) =>
          e.reason === 'ComparisonError' && e.regarding?.name === 'private';
        return list.items.some(failure) ? list : undefined;
      });
      for (const text of [JSON.stringify(failed), JSON.stringify(events)]) {
        expect(text).not.toContain(WRONG);
        expect(text).not.toContain(TOKEN);
      }

      // The right password: asked to look again (the controller's Secret watch may take a moment
      // to see the change, so the refresh is repeated until it syncs).
      await client.patch(SECRETS, ns.name, 'private-repo', { stringData: { password: TOKEN } });
      const app = await eventually(
        'the sync with the right password',
        async () => {
          const a = await getApp('private');
          if (a && succeeded(rev)(a)) return a;
          if (!a?.metadata.annotations?.[REFRESH_ANNOTATION]) await refresh('private');
          await sleep(500);
          return undefined;
        },
        60_000,
      );
      expect(app.status?.conditions?.map((c) => c.type) ?? []).not.toContain('ComparisonError');
      expect((await configMap('private-cm'))?.data).toEqual({ a: '1' });
    } finally {
      await git.stop();
    }
  });
});
