import { describe, expect, test } from '@jest/globals';
import { parseManifests } from '../../../src/core/render/manifest.ts';
import type { KubeResource } from '../../../src/core/kube/resource.ts';
import {
  hookDeletePolicies,
  hookName,
  hooksToDeleteAfterSync,
  hookTypes,
  ignoresExtraneous,
  isHook,
  isSkipped,
  KIND_ORDER,
  kindOrder,
  parseSyncOptions,
  planSync,
  resourceSyncOptions,
  selectResources,
  SyncPlanError,
  syncWave,
  type HookTask,
  type PruneTask,
  type SyncPlan,
  type SyncPlanInput,
  type SyncTask,
} from '../../../src/core/kube/sync-plan.ts';

const API_VERSIONS: Record<string, string> = {
  Namespace: 'v1',
  ConfigMap: 'v1',
  Secret: 'v1',
  Service: 'v1',
  ServiceAccount: 'v1',
  Pod: 'v1',
  PersistentVolumeClaim: 'v1',
  Deployment: 'apps/v1',
  StatefulSet: 'apps/v1',
  DaemonSet: 'apps/v1',
  Job: 'batch/v1',
  CronJob: 'batch/v1',
  Ingress: 'networking.k8s.io/v1',
  IngressClass: 'networking.k8s.io/v1',
  NetworkPolicy: 'networking.k8s.io/v1',
  Role: 'rbac.authorization.k8s.io/v1',
  RoleBinding: 'rbac.authorization.k8s.io/v1',
  ClusterRole: 'rbac.authorization.k8s.io/v1',
  ClusterRoleBinding: 'rbac.authorization.k8s.io/v1',
  CustomResourceDefinition: 'apiextensions.k8s.io/v1',
  HorizontalPodAutoscaler: 'autoscaling/v2',
  PodDisruptionBudget: 'policy/v1',
  APIService: 'apiregistration.k8s.io/v1',
  Rollout: 'kube-actions.dev/v1alpha1',
  Certificate: 'cert-manager.io/v1',
};

interface Opts {
  ns?: string;
  annotations?: Record<string, string>;
  apiVersion?: string;
  spec?: unknown;
  generateName?: string;
}

/** An object as a manifest would declare it; `ns: ''` leaves the namespace out. */
function k(kind: string, name: string, opts: Opts = {}): KubeResource {
  const metadata: KubeResource['metadata'] = {};
  if (opts.generateName) metadata.generateName = opts.generateName;
  else metadata.name = name;
  if (opts.ns !== '') metadata.namespace = opts.ns ?? 'shop';
  if (opts.annotations) metadata.annotations = opts.annotations;
  return {
    apiVersion: opts.apiVersion ?? API_VERSIONS[kind] ?? 'example.com/v1',
    kind,
    metadata,
    ...(opts.spec !== undefined ? { spec: opts.spec } : {}),
  };
}
const wave = (w: number | string, extra: Record<string, string> = {}) => ({
  annotations: { 'argocd.argoproj.io/sync-wave': String(w), ...extra },
});
const hook = (types: string, extra: Record<string, string> = {}) => ({
  annotations: { 'argocd.argoproj.io/hook': types, ...extra },
});
/** A live copy of a desired object, with the fields the apiserver adds. */
const live = (obj: KubeResource): KubeResource => ({
  ...obj,
  metadata: { ...obj.metadata, uid: `uid-${obj.metadata.name}`, resourceVersion: '100', generation: 1 },
  status: {},
});
const job = (name: string, annotations: Record<string, string>, opts: Opts = {}) =>
  k('Job', name, {
    ...opts,
    annotations,
    spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'c', image: 'busybox' }] } } },
  });

/** `Phase wave type Kind/name` for every task, checking that each task agrees with its wave and phase. */
function lines(plan: SyncPlan): string[] {
  const out: string[] = [];
  for (const p of [...plan.phases, ...(plan.syncFail ? [plan.syncFail] : [])]) {
    for (const w of p.waves) {
      for (const t of w.tasks) {
        expect([t.phase, t.wave]).toEqual([p.phase, w.wave]);
        out.push(`${p.phase} ${w.wave} ${t.type} ${t.kind}/${t.name}`);
      }
    }
  }
  return out;
}
const tasks = (plan: SyncPlan): SyncTask[] =>
  [...plan.phases, ...(plan.syncFail ? [plan.syncFail] : [])].flatMap((p) => p.waves.flatMap((w) => w.tasks));
const find = <T extends SyncTask['type']>(plan: SyncPlan, type: T, name: string) =>
  tasks(plan).find((t) => t.type === type && t.name === name) as Extract<SyncTask, { type: T }>;

function problemsOf(input: SyncPlanInput): string[] {
  try {
    planSync(input);
  } catch (err) {
    if (err instanceof SyncPlanError) return err.problems;
    throw err;
  }
  throw new Error('expected a SyncPlanError');
}

// --- annotation parsing -------------------------------------------------------------------------

describe('hook annotations', () => {
  test.each([
    ['PreSync', ['PreSync'], true],
    ['Sync', ['Sync'], true],
    ['PostSync', ['PostSync'], true],
    ['SyncFail', ['SyncFail'], true],
    ['PreSync, PostSync', ['PreSync', 'PostSync'], true],
    ['Sync,Sync', ['Sync'], true],
    ['Skip', ['Skip'], false],
    ['Skip,PreSync', ['Skip', 'PreSync'], true],
    ['Sync,Garbage', ['Sync'], true],
    ['Garbage', [], true],
    ['PostDelete', ['PostDelete'], true],
  ])('argocd.argoproj.io/hook: %s', (value, types, hookish) => {
    const obj = job('j', { 'argocd.argoproj.io/hook': value });
    expect(hookTypes(obj)).toEqual(types);
    expect(isHook(obj)).toBe(hookish);
    expect(isSkipped(obj)).toBe(value === 'Skip');
  });

  test.each([
    ['pre-install', ['PreSync'], true],
    ['pre-upgrade', ['PreSync'], true],
    ['post-install', ['PostSync'], true],
    ['post-upgrade', ['PostSync'], true],
    ['pre-install,pre-upgrade', ['PreSync'], true],
    ['post-install,post-upgrade,pre-upgrade', ['PostSync', 'PreSync'], true],
    ['post-delete', ['PostDelete'], true],
    ['pre-delete', [], true],
    ['pre-rollback', [], true],
    ['test', [], true],
    ['test-success', [], true],
    ['crd-install', [], false],
  ])('helm.sh/hook: %s', (value, types, hookish) => {
    const obj = job('j', { 'helm.sh/hook': value });
    expect(hookTypes(obj)).toEqual(types);
    expect(isHook(obj)).toBe(hookish);
  });

  test('Argo annotation wins over Helm', () => {
    const obj = job('j', { 'argocd.argoproj.io/hook': 'Sync', 'helm.sh/hook': 'pre-install' });
    expect(hookTypes(obj)).toEqual(['Sync']);
  });

  test('no annotation: not a hook', () => {
    const obj = k('Deployment', 'web');
    expect([hookTypes(obj), isHook(obj), isSkipped(obj)]).toEqual([[], false, false]);
  });

  test.each([
    [{}, ['BeforeHookCreation']],
    [{ 'argocd.argoproj.io/hook-delete-policy': 'HookSucceeded' }, ['HookSucceeded']],
    [
      { 'argocd.argoproj.io/hook-delete-policy': 'HookSucceeded, HookFailed' },
      ['HookSucceeded', 'HookFailed'],
    ],
    [
      { 'helm.sh/hook-delete-policy': 'hook-succeeded,before-hook-creation' },
      ['HookSucceeded', 'BeforeHookCreation'],
    ],
    [{ 'helm.sh/hook-delete-policy': 'hook-failed' }, ['HookFailed']],
    [
      {
        'argocd.argoproj.io/hook-delete-policy': 'HookFailed',
        'helm.sh/hook-delete-policy': 'hook-succeeded',
      },
      ['HookFailed', 'HookSucceeded'],
    ],
    [{ 'argocd.argoproj.io/hook-delete-policy': 'Whenever' }, ['BeforeHookCreation']],
  ])('delete policies %j', (annotations, expected) => {
    expect(hookDeletePolicies(job('j', { 'argocd.argoproj.io/hook': 'PreSync', ...annotations }))).toEqual(
      expected,
    );
  });
});

describe('syncWave', () => {
  test.each([
    [{}, 0],
    [{ 'argocd.argoproj.io/sync-wave': '3' }, 3],
    [{ 'argocd.argoproj.io/sync-wave': '-2' }, -2],
    [{ 'argocd.argoproj.io/sync-wave': '+4' }, 4],
    [{ 'argocd.argoproj.io/sync-wave': '007' }, 7],
    [{ 'kube-actions.dev/sync-wave': '-1' }, -1],
    [{ 'kube-actions.dev/sync-wave': '5', 'argocd.argoproj.io/sync-wave': '1' }, 5],
    [{ 'helm.sh/hook-weight': '-5' }, -5],
    [{ 'argocd.argoproj.io/sync-wave': '2', 'helm.sh/hook-weight': '-5' }, 2],
  ])('%j → %d', (annotations, expected) => {
    expect(syncWave(k('ConfigMap', 'c', { annotations }))).toBe(expected);
  });

  test.each(['one', '1.5', '', ' 1', '1e3', '99999999999'])('invalid value %j names the object', (value) => {
    const obj = k('ConfigMap', 'settings', { annotations: { 'argocd.argoproj.io/sync-wave': value } });
    expect(() => syncWave(obj)).toThrow(SyncPlanError);
    expect(() => syncWave(obj)).toThrow(
      `ConfigMap "settings" in namespace "shop": invalid sync wave "${value}" in annotation argocd.argoproj.io/sync-wave: must be an integer`,
    );
  });

  test('an invalid value of ours is an error even when Argo’s is fine', () => {
    const obj = k('Service', 'web', {
      annotations: { 'kube-actions.dev/sync-wave': 'x', 'argocd.argoproj.io/sync-wave': '1' },
    });
    expect(() => syncWave(obj)).toThrow(/kube-actions.dev\/sync-wave/);
  });
});

describe('kindOrder', () => {
  test('matches gitops-engine’s list', () => {
    expect(KIND_ORDER).toHaveLength(35);
    expect(KIND_ORDER[0]).toBe('Namespace');
    expect(KIND_ORDER.at(-1)).toBe('APIService');
    expect(KIND_ORDER.indexOf('IngressClass')).toBe(KIND_ORDER.indexOf('Ingress') - 1);
  });

  test('known kinds in order, unknown kinds last and equal', () => {
    const chain = [
      'Namespace',
      'ServiceAccount',
      'Secret',
      'ConfigMap',
      'CustomResourceDefinition',
      'ClusterRole',
      'Service',
      'Deployment',
      'Job',
      'Ingress',
      'APIService',
    ];
    for (let i = 1; i < chain.length; i++)
      expect(kindOrder(chain[i - 1]!)).toBeLessThan(kindOrder(chain[i]!));
    expect(kindOrder('Rollout')).toBeGreaterThan(kindOrder('APIService'));
    expect(kindOrder('Rollout')).toBe(kindOrder('Certificate'));
  });
});

describe('sync options', () => {
  test('application list', () => {
    expect(
      parseSyncOptions([
        'CreateNamespace=true',
        'PruneLast=true',
        'ApplyOutOfSyncOnly=true',
        ' ServerSideApply=true ',
        'Prune=false',
        'Delete=confirm',
        'Replace=true',
        'Force=true',
        'Validate=false',
        'SkipDryRunOnMissingResource=true',
        'PrunePropagationPolicy=background',
        'RespectIgnoreDifferences=true',
        'FailOnSharedResource=true',
      ]),
    ).toEqual({
      createNamespace: true,
      pruneLast: true,
      applyOutOfSyncOnly: true,
      serverSideApply: true,
      prune: false,
      delete: 'confirm',
      replace: true,
      force: true,
      validate: false,
      skipDryRunOnMissingResource: true,
      prunePropagationPolicy: 'background',
      respectIgnoreDifferences: true,
      failOnSharedResource: true,
      unknown: [],
    });
  });

  test('annotation value, comma-separated', () => {
    const obj = k('PersistentVolumeClaim', 'data', {
      annotations: { 'argocd.argoproj.io/sync-options': 'Prune=confirm, Delete=false,ServerSideApply=false' },
    });
    expect(resourceSyncOptions(obj)).toEqual({
      prune: 'confirm',
      delete: false,
      serverSideApply: false,
      unknown: [],
    });
  });

  test('unknown names and values are kept for warnings', () => {
    expect(
      parseSyncOptions(['prune=false', 'PruneLast=yes', 'Bogus', 'PrunePropagationPolicy=later']).unknown,
    ).toEqual(['prune=false', 'PruneLast=yes', 'Bogus', 'PrunePropagationPolicy=later']);
    expect(parseSyncOptions(undefined)).toEqual({ unknown: [] });
  });

  test('IgnoreExtraneous compare option', () => {
    expect(
      ignoresExtraneous(
        k('ConfigMap', 'gen', { annotations: { 'argocd.argoproj.io/compare-options': 'IgnoreExtraneous' } }),
      ),
    ).toBe(true);
    expect(ignoresExtraneous(k('ConfigMap', 'gen'))).toBe(false);
  });
});

// --- planning -----------------------------------------------------------------------------------

describe('planSync ordering', () => {
  test('one wave: kind order, custom resources last, then name', () => {
    const plan = planSync({
      desired: [
        k('Rollout', 'web'),
        k('Deployment', 'worker'),
        k('Service', 'web'),
        k('Deployment', 'api'),
        k('Certificate', 'shop-tls'),
        k('ConfigMap', 'settings'),
        k('Namespace', 'shop', { ns: '' }),
        k('ServiceAccount', 'web'),
        k('Secret', 'db'),
        k('ClusterRole', 'reader', { ns: '' }),
        k('CustomResourceDefinition', 'widgets.example.com', { ns: '' }),
        k('HorizontalPodAutoscaler', 'web'),
        k('Ingress', 'web'),
        k('Job', 'seed'),
        k('PodDisruptionBudget', 'web'),
      ],
    });
    expect(lines(plan)).toEqual([
      'Sync 0 apply Namespace/shop',
      'Sync 0 apply PodDisruptionBudget/web',
      'Sync 0 apply ServiceAccount/web',
      'Sync 0 apply Secret/db',
      'Sync 0 apply ConfigMap/settings',
      'Sync 0 apply CustomResourceDefinition/widgets.example.com',
      'Sync 0 apply ClusterRole/reader',
      'Sync 0 apply Service/web',
      'Sync 0 apply Deployment/api',
      'Sync 0 apply Deployment/worker',
      'Sync 0 apply HorizontalPodAutoscaler/web',
      'Sync 0 apply Job/seed',
      'Sync 0 apply Ingress/web',
      'Sync 0 apply Certificate/shop-tls',
      'Sync 0 apply Rollout/web',
    ]);
  });

  test('waves ascend, negative first, and ours overrides Argo’s', () => {
    const plan = planSync({
      desired: [
        k('Deployment', 'web', wave(2)),
        k('ConfigMap', 'early', wave(-3)),
        k('Secret', 'mid', wave(0)),
        k('Service', 'web', {
          annotations: { 'argocd.argoproj.io/sync-wave': '5', 'kube-actions.dev/sync-wave': '-1' },
        }),
        k('ConfigMap', 'plain'),
      ],
    });
    expect(lines(plan)).toEqual([
      'Sync -3 apply ConfigMap/early',
      'Sync -1 apply Service/web',
      'Sync 0 apply Secret/mid',
      'Sync 0 apply ConfigMap/plain',
      'Sync 2 apply Deployment/web',
    ]);
    expect(plan.phases.map((p) => [p.phase, p.waves.map((w) => w.wave)])).toEqual([['Sync', [-3, -1, 0, 2]]]);
  });

  test('a Helm hook weight orders plain resources too (as gitops-engine syncwaves.Wave)', () => {
    const plan = planSync({
      desired: [k('ConfigMap', 'a'), k('ConfigMap', 'b', { annotations: { 'helm.sh/hook-weight': '-1' } })],
    });
    expect(lines(plan)).toEqual(['Sync -1 apply ConfigMap/b', 'Sync 0 apply ConfigMap/a']);
  });

  test('a Namespace in a later wave is moved before the first object in it, taking its wave', () => {
    const plan = planSync({
      desired: [
        k('Namespace', 'payments', { ns: '', ...wave(5) }),
        k('Deployment', 'api', { ns: 'payments', ...wave(1) }),
        k('ConfigMap', 'cfg', { ns: 'payments', ...wave(3) }),
        k('ConfigMap', 'other', { ns: 'shop' }),
      ],
    });
    expect(lines(plan)).toEqual([
      'Sync 0 apply ConfigMap/other',
      'Sync 1 apply Namespace/payments',
      'Sync 1 apply Deployment/api',
      'Sync 3 apply ConfigMap/cfg',
    ]);
  });

  test('a Namespace used by a PreSync hook is created in PreSync', () => {
    const plan = planSync({
      desired: [
        k('Namespace', 'payments', { ns: '' }),
        job('migrate', { 'argocd.argoproj.io/hook': 'PreSync' }, { ns: 'payments' }),
      ],
    });
    expect(lines(plan)).toEqual(['PreSync 0 apply Namespace/payments', 'PreSync 0 hook Job/migrate']);
  });

  test('a CRD in a later wave is moved before the first custom resource of its kind', () => {
    const crd = k('CustomResourceDefinition', 'widgets.example.com', {
      ns: '',
      ...wave(4),
      spec: { group: 'example.com', names: { kind: 'Widget', plural: 'widgets' }, scope: 'Namespaced' },
    });
    const plan = planSync({
      desired: [
        crd,
        k('Widget', 'w1', { apiVersion: 'example.com/v1', ...wave(-1) }),
        k('Widget', 'w2', { apiVersion: 'example.com/v1' }),
      ],
    });
    expect(lines(plan)).toEqual([
      'Sync -1 apply CustomResourceDefinition/widgets.example.com',
      'Sync -1 apply Widget/w1',
      'Sync 0 apply Widget/w2',
    ]);
  });

  test('a CRD already before its resources stays put', () => {
    const crd = k('CustomResourceDefinition', 'widgets.example.com', {
      ns: '',
      spec: { group: 'example.com', names: { kind: 'Widget' } },
    });
    const plan = planSync({ desired: [k('Widget', 'w', { apiVersion: 'example.com/v1', ...wave(2) }), crd] });
    expect(lines(plan)).toEqual([
      'Sync 0 apply CustomResourceDefinition/widgets.example.com',
      'Sync 2 apply Widget/w',
    ]);
  });
});

describe('planSync hooks', () => {
  const desired = [
    k('Deployment', 'web', wave(1)),
    k('ConfigMap', 'settings'),
    job('migrate', { 'argocd.argoproj.io/hook': 'PreSync', 'argocd.argoproj.io/sync-wave': '-1' }),
    job('check-db', { 'argocd.argoproj.io/hook': 'PreSync' }),
    job('warm-cache', { 'argocd.argoproj.io/hook': 'Sync', 'argocd.argoproj.io/sync-wave': '1' }),
    job('smoke', {
      'argocd.argoproj.io/hook': 'PostSync',
      'argocd.argoproj.io/hook-delete-policy': 'HookSucceeded',
    }),
    job('notify-failure', {
      'argocd.argoproj.io/hook': 'SyncFail',
      'argocd.argoproj.io/hook-delete-policy': 'HookFailed',
    }),
    job('audit', { 'argocd.argoproj.io/hook': 'PreSync,PostSync' }),
  ];

  test('hooks run in their phases, SyncFail apart', () => {
    const plan = planSync({ desired });
    expect(lines(plan)).toEqual([
      'PreSync -1 hook Job/migrate',
      'PreSync 0 hook Job/audit',
      'PreSync 0 hook Job/check-db',
      'Sync 0 apply ConfigMap/settings',
      'Sync 1 apply Deployment/web',
      'Sync 1 hook Job/warm-cache',
      'PostSync 0 hook Job/audit',
      'PostSync 0 hook Job/smoke',
      'SyncFail 0 hook Job/notify-failure',
    ]);
    expect(plan.phases.map((p) => p.phase)).toEqual(['PreSync', 'Sync', 'PostSync']);
    expect(plan.syncFail?.phase).toBe('SyncFail');
    const smoke = find(plan, 'hook', 'smoke');
    expect([smoke.hookType, smoke.deletePolicies]).toEqual(['PostSync', ['HookSucceeded']]);
  });

  test('skipHooks leaves them out', () => {
    const plan = planSync({ desired, options: { skipHooks: true } });
    expect(lines(plan)).toEqual(['Sync 0 apply ConfigMap/settings', 'Sync 1 apply Deployment/web']);
    expect(plan.syncFail).toBeUndefined();
    expect(plan.skipped.filter((s) => s.reason === 'hooks skipped')).toHaveLength(6);
  });

  test('BeforeHookCreation (the default) deletes the previous instance first', () => {
    const migrate = job('migrate', { 'argocd.argoproj.io/hook': 'PreSync' });
    const smoke = job('smoke', {
      'argocd.argoproj.io/hook': 'PreSync',
      'argocd.argoproj.io/hook-delete-policy': 'HookSucceeded',
    });
    const plan = planSync({
      desired: [migrate, smoke, k('ConfigMap', 'a')],
      live: [live(migrate), live(smoke)],
    });
    expect(lines(plan)).toEqual([
      'PreSync 0 hook-delete Job/migrate',
      'PreSync 0 hook Job/migrate',
      'PreSync 0 hook Job/smoke',
      'Sync 0 apply ConfigMap/a',
    ]);
    expect(find(plan, 'hook-delete', 'migrate').reason).toBe('BeforeHookCreation');
    expect(find(plan, 'hook', 'migrate').live).toEqual(live(migrate));
  });

  test('live hooks are never pruned', () => {
    const old = job('old-migrate', { 'argocd.argoproj.io/hook': 'PreSync' });
    const plan = planSync({ desired: [k('ConfigMap', 'a')], live: [live(old)], options: { prune: true } });
    expect(lines(plan)).toEqual(['Sync 0 apply ConfigMap/a']);
  });

  test('generateName hooks get a name that is stable for the operation', () => {
    const startedAt = new Date('2026-03-01T12:00:00Z');
    const migrate = job('', { 'argocd.argoproj.io/hook': 'PreSync,PostSync' }, { generateName: 'migrate-' });
    const plan = planSync({
      desired: [migrate],
      options: { revision: '9f8e7d6c5b4a39281706f5e4d3c2b1a098765432', startedAt },
    });
    expect(lines(plan)).toEqual([
      'PreSync 0 hook Job/migrate-9f8e7d6-presync-1772366400',
      'PostSync 0 hook Job/migrate-9f8e7d6-postsync-1772366400',
    ]);
    const task = find(plan, 'hook', 'migrate-9f8e7d6-presync-1772366400');
    expect(task.object.metadata).toMatchObject({
      name: 'migrate-9f8e7d6-presync-1772366400',
      generateName: 'migrate-',
    });
    expect(migrate.metadata.name).toBeUndefined();
    expect(hookName('x-', 'abc', 'Sync', startedAt)).toBe('x-abc-sync-1772366400');
  });

  test('generateName hooks need startedAt', () => {
    const migrate = job('', { 'argocd.argoproj.io/hook': 'PreSync' }, { generateName: 'migrate-' });
    expect(problemsOf({ desired: [migrate] })).toEqual([
      'Job "migrate-*" in namespace "shop": a hook with only metadata.generateName needs options.startedAt to derive its name',
    ]);
  });

  test('Helm hooks map to phases, the weight to a wave; crd-install is a normal resource; test hooks are ignored', () => {
    const plan = planSync({
      desired: [
        job('db-init', {
          'helm.sh/hook': 'pre-install,pre-upgrade',
          'helm.sh/hook-weight': '-5',
          'helm.sh/hook-delete-policy': 'hook-succeeded',
        }),
        job('notify', { 'helm.sh/hook': 'post-install' }),
        k('Pod', 'chart-test', { annotations: { 'helm.sh/hook': 'test' } }),
        k('CustomResourceDefinition', 'widgets.example.com', {
          ns: '',
          annotations: { 'helm.sh/hook': 'crd-install' },
        }),
        job('cleanup', { 'helm.sh/hook': 'post-delete' }),
        k('Deployment', 'web'),
      ],
    });
    expect(lines(plan)).toEqual([
      'PreSync -5 hook Job/db-init',
      'Sync 0 apply CustomResourceDefinition/widgets.example.com',
      'Sync 0 apply Deployment/web',
      'PostSync 0 hook Job/notify',
    ]);
    expect(find(plan, 'hook', 'db-init').deletePolicies).toEqual(['HookSucceeded']);
    expect(plan.skipped).toEqual([
      { key: '/Pod/shop/chart-test', reason: 'Helm hook "test" has no Argo CD equivalent' },
    ]);
    expect(plan.deletionHooks.map((h) => [h.hookType, h.key])).toEqual([
      ['PostDelete', 'batch/Job/shop/cleanup'],
    ]);
  });

  test('PreDelete/PostDelete hooks are kept for application deletion, not run by a sync', () => {
    const plan = planSync({
      desired: [
        job('drain', { 'argocd.argoproj.io/hook': 'PreDelete' }),
        job('goodbye', { 'argocd.argoproj.io/hook': 'PostDelete', 'argocd.argoproj.io/sync-wave': '2' }),
        job('revoke', { 'argocd.argoproj.io/hook': 'PostDelete' }),
      ],
    });
    expect(lines(plan)).toEqual([]);
    expect(plan.deletionHooks.map((h) => `${h.hookType} ${h.wave} ${h.key}`)).toEqual([
      'PreDelete 0 batch/Job/shop/drain',
      'PostDelete 0 batch/Job/shop/revoke',
      'PostDelete 2 batch/Job/shop/goodbye',
    ]);
  });

  test('a hook with a misspelt type is ignored with a warning', () => {
    const plan = planSync({ desired: [job('typo', { 'argocd.argoproj.io/hook': 'PostSynk' })] });
    expect(lines(plan)).toEqual([]);
    expect(plan.warnings).toEqual([
      'Job "typo" in namespace "shop": no known hook type in argocd.argoproj.io/hook: "PostSynk"; the hook is ignored',
    ]);
  });

  test('an unknown delete policy is warned about', () => {
    const plan = planSync({
      desired: [
        job('j', { 'argocd.argoproj.io/hook': 'Sync', 'argocd.argoproj.io/hook-delete-policy': 'Never' }),
      ],
    });
    expect(plan.warnings).toEqual([
      'Job "j" in namespace "shop": unknown hook delete policy "Never" ignored',
    ]);
  });

  test('hooksToDeleteAfterSync follows the outcome of the whole sync', () => {
    const plan = planSync({ desired });
    expect(hooksToDeleteAfterSync(plan, 'succeeded').map((t) => t.name)).toEqual(['smoke']);
    expect(hooksToDeleteAfterSync(plan, 'failed').map((t) => t.name)).toEqual(['notify-failure']);
  });
});

describe('planSync Skip', () => {
  test('a Skip object is never applied and its live copy is not pruned', () => {
    const skipped = k('ConfigMap', 'hand-managed', hook('Skip'));
    const plan = planSync({
      desired: [skipped, k('ConfigMap', 'a')],
      live: [live(skipped)],
      options: { prune: true },
    });
    expect(lines(plan)).toEqual(['Sync 0 apply ConfigMap/a']);
    expect(plan.skipped).toEqual([
      { key: '/ConfigMap/shop/hand-managed', reason: 'argocd.argoproj.io/hook: Skip' },
    ]);
  });

  test('a live-only Skip object is not pruned', () => {
    const plan = planSync({
      desired: [],
      live: [live(k('ConfigMap', 'keep', hook('Skip')))],
      options: { prune: true },
    });
    expect(lines(plan)).toEqual([]);
    expect(plan.skipped).toEqual([
      { key: '/ConfigMap/shop/keep', reason: 'argocd.argoproj.io/hook: Skip (not pruned)' },
    ]);
  });
});

describe('planSync pruning', () => {
  const liveOnly = [
    live(k('ConfigMap', 'old-cfg')),
    live(k('Deployment', 'old-api')),
    live(k('ServiceAccount', 'old-sa')),
    live(k('Service', 'old-svc', wave(2))),
    live(k('Secret', 'old-secret', wave(-1))),
    live(k('Job', 'old-job', wave(5))),
  ];

  test('nothing is pruned unless the sync prunes', () => {
    const plan = planSync({ desired: [k('ConfigMap', 'cfg')], live: liveOnly.slice(0, 1) });
    expect(lines(plan)).toEqual(['Sync 0 apply ConfigMap/cfg']);
    expect(plan.skipped).toEqual([
      { key: '/ConfigMap/shop/old-cfg', reason: 'not pruned: pruning is not enabled for this sync' },
    ]);
  });

  test('prune waves are mirrored, prunes lead their wave, reverse kind order inside it', () => {
    const plan = planSync({
      desired: [k('ConfigMap', 'cfg'), k('Deployment', 'api', wave(2)), k('Secret', 'early', wave(-1))],
      live: liveOnly,
      options: { prune: true },
    });
    // Live prune waves -1, 0, 2, 5 become 5, 2, 0, -1: last created, first deleted.
    expect(lines(plan)).toEqual([
      'Sync -1 prune Job/old-job',
      'Sync -1 apply Secret/early',
      'Sync 0 prune Service/old-svc',
      'Sync 0 apply ConfigMap/cfg',
      'Sync 2 prune Deployment/old-api',
      'Sync 2 prune ConfigMap/old-cfg',
      'Sync 2 prune ServiceAccount/old-sa',
      'Sync 2 apply Deployment/api',
      'Sync 5 prune Secret/old-secret',
    ]);
    const p = find(plan, 'prune', 'old-api');
    expect([p.requiresConfirmation, p.propagationPolicy, p.pruneLast, p.ignoreExtraneous]).toEqual([
      false,
      'foreground',
      false,
      false,
    ]);
  });

  test('objects still desired are applied, not pruned', () => {
    const cfg = k('ConfigMap', 'cfg');
    const plan = planSync({ desired: [cfg], live: [live(cfg)], options: { prune: true } });
    expect(lines(plan)).toEqual(['Sync 0 apply ConfigMap/cfg']);
    expect(find(plan, 'apply', 'cfg').live).toEqual(live(cfg));
  });

  test('PruneLast (application) prunes one wave after the last Sync wave', () => {
    const plan = planSync({
      desired: [
        k('ConfigMap', 'cfg'),
        k('Deployment', 'api', wave(3)),
        job('smoke', { 'argocd.argoproj.io/hook': 'PostSync' }),
      ],
      live: liveOnly.slice(0, 3),
      options: { prune: true, syncOptions: ['PruneLast=true'] },
    });
    expect(lines(plan)).toEqual([
      'Sync 0 apply ConfigMap/cfg',
      'Sync 3 apply Deployment/api',
      'Sync 4 prune Deployment/old-api',
      'Sync 4 prune ConfigMap/old-cfg',
      'Sync 4 prune ServiceAccount/old-sa',
      'PostSync 0 hook Job/smoke',
    ]);
    expect(
      tasks(plan)
        .filter((t): t is PruneTask => t.type === 'prune')
        .every((t) => t.pruneLast),
    ).toBe(true);
  });

  test('PruneLast on one live object only', () => {
    const plan = planSync({
      desired: [k('ConfigMap', 'cfg', wave(1))],
      live: [
        live(k('ConfigMap', 'a')),
        live(k('ConfigMap', 'b', { annotations: { 'argocd.argoproj.io/sync-options': 'PruneLast=true' } })),
      ],
      options: { prune: true },
    });
    expect(lines(plan)).toEqual([
      'Sync 0 prune ConfigMap/a',
      'Sync 1 apply ConfigMap/cfg',
      'Sync 2 prune ConfigMap/b',
    ]);
  });

  test('PruneLast is never earlier than wave 1, even when every wave is negative', () => {
    const plan = planSync({
      desired: [k('ConfigMap', 'cfg', wave(-4))],
      live: [live(k('ConfigMap', 'gone', wave(-2)))],
      options: { prune: true, syncOptions: ['PruneLast=true'] },
    });
    expect(lines(plan)).toEqual(['Sync -4 apply ConfigMap/cfg', 'Sync 1 prune ConfigMap/gone']);
  });

  test('Prune=false and Prune=confirm, per object and per application', () => {
    const objs = [
      live(
        k('PersistentVolumeClaim', 'keep', {
          annotations: { 'argocd.argoproj.io/sync-options': 'Prune=false' },
        }),
      ),
      live(
        k('Namespace', 'team', {
          ns: '',
          annotations: { 'argocd.argoproj.io/sync-options': 'Prune=confirm' },
        }),
      ),
      live(k('ConfigMap', 'plain')),
    ];
    const plan = planSync({ desired: [], live: objs, options: { prune: true } });
    expect(lines(plan)).toEqual(['Sync 0 prune ConfigMap/plain', 'Sync 0 prune Namespace/team']);
    expect(find(plan, 'prune', 'team').requiresConfirmation).toBe(true);
    expect(plan.skipped).toEqual([
      { key: '/PersistentVolumeClaim/shop/keep', reason: 'not pruned: Prune=false' },
    ]);

    // Application-level Prune=false; an object's own Prune=true overrides it.
    const app = planSync({
      desired: [],
      live: [
        live(k('ConfigMap', 'a')),
        live(k('ConfigMap', 'b', { annotations: { 'argocd.argoproj.io/sync-options': 'Prune=true' } })),
      ],
      options: { prune: true, syncOptions: ['Prune=false'] },
    });
    expect(lines(app)).toEqual(['Sync 0 prune ConfigMap/b']);
  });

  test('prune options: propagation policy and IgnoreExtraneous', () => {
    const plan = planSync({
      desired: [],
      live: [
        live(
          k('ConfigMap', 'gen', {
            annotations: { 'argocd.argoproj.io/compare-options': 'IgnoreExtraneous' },
          }),
        ),
      ],
      options: { prune: true, syncOptions: ['PrunePropagationPolicy=orphan'] },
    });
    const p = find(plan, 'prune', 'gen');
    expect([p.propagationPolicy, p.ignoreExtraneous]).toEqual(['orphan', true]);
  });

  test('a bad wave on a live object does not block pruning it', () => {
    const plan = planSync({
      desired: [],
      live: [live(k('ConfigMap', 'weird', wave('soon')))],
      options: { prune: true },
    });
    expect(lines(plan)).toEqual(['Sync 0 prune ConfigMap/weird']);
    expect(plan.warnings[0]).toMatch(/invalid sync wave "soon".*pruned in wave 0/);
  });
});

describe('planSync namespaces and identity', () => {
  test('desired objects default to the destination namespace; cluster-scoped kinds have none', () => {
    const plan = planSync({
      desired: [
        k('ConfigMap', 'cfg', { ns: '' }),
        k('ClusterRole', 'reader', { ns: '' }),
        k('Secret', 's', { ns: 'other' }),
      ],
      live: [live(k('ConfigMap', 'cfg', { ns: 'shop' })), live(k('ClusterRole', 'reader', { ns: '' }))],
      options: { namespace: 'shop', prune: true },
    });
    expect(tasks(plan).map((t) => [t.type, t.key, t.namespace])).toEqual([
      ['apply', '/Secret/other/s', 'other'],
      ['apply', '/ConfigMap/shop/cfg', 'shop'],
      ['apply', 'rbac.authorization.k8s.io/ClusterRole//reader', undefined],
    ]);
  });

  test('isNamespaced tells custom kinds apart', () => {
    const plan = planSync({
      desired: [k('ClusterIssuer', 'letsencrypt', { apiVersion: 'cert-manager.io/v1', ns: '' })],
      live: [live(k('ClusterIssuer', 'letsencrypt', { apiVersion: 'cert-manager.io/v1', ns: '' }))],
      options: {
        namespace: 'shop',
        prune: true,
        isNamespaced: (g, kind) => (g === 'cert-manager.io' ? kind !== 'ClusterIssuer' : undefined),
      },
    });
    expect(lines(plan)).toEqual(['Sync 0 apply ClusterIssuer/letsencrypt']);
  });

  test('CreateNamespace adds the destination namespace in PreSync', () => {
    const plan = planSync({
      desired: [
        k('ConfigMap', 'cfg', { ns: '' }),
        job('migrate', { 'argocd.argoproj.io/hook': 'PreSync' }, { ns: '' }),
      ],
      options: { namespace: 'payments', syncOptions: ['CreateNamespace=true'] },
    });
    expect(lines(plan)).toEqual([
      'PreSync 0 apply Namespace/payments',
      'PreSync 0 hook Job/migrate',
      'Sync 0 apply ConfigMap/cfg',
    ]);
    const ns = find(plan, 'apply', 'payments');
    expect([ns.createdNamespace, ns.object]).toEqual([
      true,
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'payments' } },
    ]);
  });

  test('CreateNamespace does not duplicate a Namespace from the manifests', () => {
    const plan = planSync({
      desired: [k('Namespace', 'payments', { ns: '', ...wave(-1) })],
      options: { namespace: 'payments', syncOptions: ['CreateNamespace=true'] },
    });
    expect(lines(plan)).toEqual(['Sync -1 apply Namespace/payments']);
  });
});

describe('planSync apply options', () => {
  test('ServerSideApply (application), opted out per object; Replace wins and is flagged unsupported', () => {
    const plan = planSync({
      desired: [
        k('ConfigMap', 'a'),
        k('ConfigMap', 'b', { annotations: { 'argocd.argoproj.io/sync-options': 'ServerSideApply=false' } }),
        k('ConfigMap', 'c', {
          annotations: { 'argocd.argoproj.io/sync-options': 'Replace=true,Force=true' },
        }),
        k('ConfigMap', 'd', {
          annotations: {
            'argocd.argoproj.io/sync-options': 'Validate=false,SkipDryRunOnMissingResource=true',
          },
        }),
      ],
      options: { syncOptions: ['ServerSideApply=true'] },
    });
    expect(
      tasks(plan).map(
        (t) => t.type === 'apply' && [t.name, t.mode, t.force, t.validate, t.skipDryRunOnMissingResource],
      ),
    ).toEqual([
      ['a', 'server-side-apply', false, true, false],
      ['b', 'client-side-apply', false, true, false],
      ['c', 'replace', true, true, false],
      ['d', 'server-side-apply', false, false, true],
    ]);
    expect(plan.unsupported).toEqual([
      { key: '/ConfigMap/shop/c', option: 'Replace=true' },
      { key: '/ConfigMap/shop/c', option: 'Force=true' },
    ]);
    expect(plan.options.serverSideApply).toBe(true);
  });

  test('client-side apply by default', () => {
    expect(find(planSync({ desired: [k('ConfigMap', 'a')] }), 'apply', 'a').mode).toBe('client-side-apply');
  });

  test('ApplyOutOfSyncOnly skips unchanged live objects, keeps new ones and hooks', () => {
    const same = k('ConfigMap', 'same');
    const changed = k('ConfigMap', 'changed');
    const migrate = job('migrate', { 'argocd.argoproj.io/hook': 'PreSync' });
    const plan = planSync({
      desired: [same, changed, k('ConfigMap', 'new'), migrate],
      live: [live(same), live(changed), live(migrate)],
      options: {
        syncOptions: ['ApplyOutOfSyncOnly=true'],
        isOutOfSync: (desired) => desired.metadata.name !== 'same',
      },
    });
    expect(lines(plan)).toEqual([
      'PreSync 0 hook-delete Job/migrate',
      'PreSync 0 hook Job/migrate',
      'Sync 0 apply ConfigMap/changed',
      'Sync 0 apply ConfigMap/new',
    ]);
    expect(plan.skipped).toEqual([{ key: '/ConfigMap/shop/same', reason: 'in sync (ApplyOutOfSyncOnly)' }]);
  });

  test('ApplyOutOfSyncOnly needs a comparison', () => {
    expect(
      problemsOf({ desired: [k('ConfigMap', 'a')], options: { syncOptions: ['ApplyOutOfSyncOnly=true'] } }),
    ).toEqual(['ApplyOutOfSyncOnly=true needs options.isOutOfSync to compare objects']);
  });

  test('unknown options are warned about', () => {
    const plan = planSync({
      desired: [k('ConfigMap', 'a', { annotations: { 'argocd.argoproj.io/sync-options': 'Prune=maybe' } })],
      options: { syncOptions: ['Turbo=true'] },
    });
    expect(plan.warnings).toEqual([
      'unknown application sync option "Turbo=true" ignored',
      'ConfigMap "a" in namespace "shop": unknown sync option "Prune=maybe" ignored',
    ]);
  });
});

describe('planSync validation', () => {
  test('every problem is reported at once, naming the object', () => {
    const problems = problemsOf({
      desired: [
        k('ConfigMap', 'bad-wave', wave('first')),
        { apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'shop', generateName: 'svc-' } },
        { apiVersion: 'v1', kind: 'Secret', metadata: { namespace: 'shop' } },
        k('Deployment', 'web'),
        k('Deployment', 'web'),
        job('j', { 'argocd.argoproj.io/hook': 'PreSync', 'helm.sh/hook-weight': 'heavy' }),
        { apiVersion: '', kind: 'ConfigMap', metadata: { name: 'x' } },
      ],
    });
    expect(problems).toEqual([
      'ConfigMap "bad-wave" in namespace "shop": invalid sync wave "first" in annotation argocd.argoproj.io/sync-wave: must be an integer',
      'Service "svc-*" in namespace "shop": metadata.name is required',
      'Secret "" in namespace "shop": metadata.name is required',
      'Deployment "web" in namespace "shop": defined more than once',
      'Job "j" in namespace "shop": invalid sync wave "heavy" in annotation helm.sh/hook-weight: must be an integer',
      'ConfigMap "x": apiVersion and kind are required',
    ]);
  });

  test('the error message lists the problems', () => {
    expect(() => planSync({ desired: [k('ConfigMap', 'a', wave('x'))] })).toThrow(
      /^ConfigMap "a" in namespace "shop": invalid sync wave "x"/,
    );
  });

  test('the same name in two namespaces is not a duplicate', () => {
    expect(
      lines(planSync({ desired: [k('ConfigMap', 'a', { ns: 'x' }), k('ConfigMap', 'a', { ns: 'y' })] })),
    ).toHaveLength(2);
  });
});

describe('planSync with rendered manifests', () => {
  test('accepts objects from the renderer and plans a realistic app', () => {
    const yaml = `
apiVersion: v1
kind: ServiceAccount
metadata: {name: web}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations:
    argocd.argoproj.io/hook: PreSync
    argocd.argoproj.io/hook-delete-policy: HookSucceeded,BeforeHookCreation
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: ghcr.io/acme/web:1.4.2, args: [migrate]}]
---
apiVersion: kube-actions.dev/v1alpha1
kind: Rollout
metadata:
  name: web
  annotations: {argocd.argoproj.io/sync-wave: "1"}
spec:
  replicas: 3
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
`;
    const desired = parseManifests(yaml, 'app.yaml').map((m) => m.object);
    const plan = planSync({ desired, options: { namespace: 'shop' } });
    expect(lines(plan)).toEqual([
      'PreSync 0 hook Job/migrate',
      'Sync 0 apply ServiceAccount/web',
      'Sync 0 apply Service/web',
      'Sync 1 apply Rollout/web',
    ]);
    const hookTask: HookTask = find(plan, 'hook', 'migrate');
    expect(hookTask.namespace).toBe('shop');
    expect(hooksToDeleteAfterSync(plan, 'succeeded')).toEqual([hookTask]);
  });
});

describe('selectResources (selective sync)', () => {
  test('only the applies and prunes named, by group, kind, name and namespace when given; no hooks', () => {
    const plan = planSync({
      desired: [
        k('ConfigMap', 'a', wave(-1)),
        k('ConfigMap', 'b'),
        k('Deployment', 'a'),
        job('migrate', { 'argocd.argoproj.io/hook': 'PreSync' }),
      ],
      live: [live(k('ConfigMap', 'old'))],
      options: { prune: true },
    });
    const selected = selectResources(plan, [
      { kind: 'ConfigMap', name: 'a' },
      { group: 'apps', kind: 'Deployment', name: 'a', namespace: 'elsewhere' },
      { kind: 'ConfigMap', name: 'old' },
    ]);
    expect(lines(selected)).toEqual(['Sync -1 apply ConfigMap/a', 'Sync 0 prune ConfigMap/old']);
    expect(selected.syncFail).toBeUndefined();
  });
});
