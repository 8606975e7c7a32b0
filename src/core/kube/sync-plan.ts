// Sync planning after Argo CD's gitops-engine `pkg/sync` (sync_context.go getSyncTasks, sync_tasks.go,
// hook/, syncwaves/): which objects to apply, prune, create as hooks or delete, in which phase and
// wave, in which order. Pure: the caller supplies the desired manifests and the live objects the
// application manages, and executes the plan (apply a wave, wait for health, next wave).
import { apiGroup, annotation, describeObject, field, type KubeResource } from './resource.ts';
import { compareStrings as cmp } from '../order.ts';

// --- annotations and vocabulary -----------------------------------------------------------------

export const ANNOTATION_HOOK = 'argocd.argoproj.io/hook';
export const ANNOTATION_HOOK_DELETE_POLICY = 'argocd.argoproj.io/hook-delete-policy';
export const ANNOTATION_SYNC_WAVE = 'argocd.argoproj.io/sync-wave';
/** Our own wave annotation; it wins over Argo's when an object carries both. */
export const ANNOTATION_KUBE_ACTIONS_SYNC_WAVE = 'kube-actions.dev/sync-wave';
export const ANNOTATION_SYNC_OPTIONS = 'argocd.argoproj.io/sync-options';
export const ANNOTATION_COMPARE_OPTIONS = 'argocd.argoproj.io/compare-options';
export const ANNOTATION_HELM_HOOK = 'helm.sh/hook';
export const ANNOTATION_HELM_HOOK_WEIGHT = 'helm.sh/hook-weight';
export const ANNOTATION_HELM_HOOK_DELETE_POLICY = 'helm.sh/hook-delete-policy';

/** The phases a sync runs, in order; SyncFail runs only when the sync fails (gitops-engine syncPhaseOrder). */
export type SyncPhase = 'PreSync' | 'Sync' | 'PostSync' | 'SyncFail';
export const SYNC_PHASES: readonly SyncPhase[] = ['PreSync', 'Sync', 'PostSync', 'SyncFail'];

/**
 * Argo CD hook types. Skip is a flag (do not apply the object), not a phase. PreDelete/PostDelete run
 * when the whole application is deleted, never during a sync (Argo CD docs, sync-waves.md).
 */
export type HookType = SyncPhase | 'Skip' | 'PreDelete' | 'PostDelete';
const HOOK_TYPES: ReadonlySet<string> = new Set<HookType>([
  'PreSync',
  'Sync',
  'PostSync',
  'SyncFail',
  'Skip',
  'PreDelete',
  'PostDelete',
]);

export type HookDeletePolicy = 'HookSucceeded' | 'HookFailed' | 'BeforeHookCreation';
const DELETE_POLICIES: ReadonlySet<string> = new Set<HookDeletePolicy>([
  'HookSucceeded',
  'HookFailed',
  'BeforeHookCreation',
]);

/**
 * Helm hooks Argo CD maps onto its own (gitops-engine hook/helm/type.go; post-delete per Argo CD's
 * helm.md). Any other `helm.sh/hook` value (test, test-success, pre-delete, pre-rollback, ...) still
 * marks the object a hook, one with no phase, so it is never applied. `crd-install` is the exception:
 * not a hook at all, the CRD is synced as a normal resource (hook/helm IsHook; Argo's helm.md calls
 * it "equivalent to PreSync", the code does not).
 */
const HELM_HOOK_TYPES: Readonly<Record<string, HookType>> = {
  'pre-install': 'PreSync',
  'pre-upgrade': 'PreSync',
  'post-install': 'PostSync',
  'post-upgrade': 'PostSync',
  'post-delete': 'PostDelete',
};
const HELM_DELETE_POLICIES: Readonly<Record<string, HookDeletePolicy>> = {
  'before-hook-creation': 'BeforeHookCreation',
  'hook-succeeded': 'HookSucceeded',
  'hook-failed': 'HookFailed',
};

/** Comma-separated annotation values, trimmed, empty entries and duplicates dropped (GetAnnotationCSVs). */
function csv(value: string | undefined): string[] {
  if (value === undefined) return [];
  return [...new Set(value.split(',').map((s) => s.trim()))].filter((s) => s !== '');
}

/**
 * The hook types of an object. Argo's annotation wins: Helm's is read only when the Argo annotation
 * names no valid type (gitops-engine hook.Types). Unrecognised values are dropped.
 */
export function hookTypes(obj: KubeResource): HookType[] {
  const argo = csv(annotation(obj, ANNOTATION_HOOK)).filter((t): t is HookType => HOOK_TYPES.has(t));
  if (argo.length > 0) return argo;
  const helm = csv(annotation(obj, ANNOTATION_HELM_HOOK)).flatMap((t) => HELM_HOOK_TYPES[t] ?? []);
  return [...new Set(helm)];
}

/** True when the object is annotated `hook: Skip` and nothing else: it is never applied (hook.Skip). */
export function isSkipped(obj: KubeResource): boolean {
  const types = hookTypes(obj);
  return types.length === 1 && types[0] === 'Skip';
}

/**
 * True when the object is a hook rather than a managed resource (gitops-engine hook.IsHook): any
 * Argo hook annotation except a lone Skip, or any Helm hook annotation except crd-install. A hook
 * whose annotation names no known type is still a hook, and is ignored.
 */
export function isHook(obj: KubeResource): boolean {
  if (annotation(obj, ANNOTATION_HOOK) !== undefined) return !isSkipped(obj);
  const helm = annotation(obj, ANNOTATION_HELM_HOOK);
  return helm !== undefined && helm.trim() !== 'crd-install';
}

/**
 * Delete policies of a hook: Argo's and Helm's annotations together, defaulting to
 * BeforeHookCreation when neither names one (gitops-engine hook.DeletePolicies).
 */
export function hookDeletePolicies(obj: KubeResource): HookDeletePolicy[] {
  const policies = new Set<HookDeletePolicy>();
  for (const p of csv(annotation(obj, ANNOTATION_HOOK_DELETE_POLICY))) {
    if (DELETE_POLICIES.has(p)) policies.add(p as HookDeletePolicy);
  }
  for (const p of csv(annotation(obj, ANNOTATION_HELM_HOOK_DELETE_POLICY))) {
    const mapped = HELM_DELETE_POLICIES[p];
    if (mapped) policies.add(mapped);
  }
  return policies.size > 0 ? [...policies] : ['BeforeHookCreation'];
}

/** Delete-policy values neither Argo nor Helm knows (Argo drops them silently; we warn). */
function unknownDeletePolicies(obj: KubeResource): string[] {
  return [
    ...csv(annotation(obj, ANNOTATION_HOOK_DELETE_POLICY)).filter((p) => !DELETE_POLICIES.has(p)),
    ...csv(annotation(obj, ANNOTATION_HELM_HOOK_DELETE_POLICY)).filter((p) => !(p in HELM_DELETE_POLICIES)),
  ];
}

// --- waves --------------------------------------------------------------------------------------

export class SyncPlanError extends Error {
  override name = 'SyncPlanError';
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.problems = problems;
  }
}

function parseWave(obj: KubeResource, key: string): number | undefined {
  const raw = annotation(obj, key);
  if (raw === undefined) return undefined;
  // Go's strconv.Atoi accepts an optional sign and decimal digits, nothing else.
  const value = /^[+-]?\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(value) || value < -(2 ** 31) || value > 2 ** 31 - 1) {
    throw new SyncPlanError([
      `${describeObject(obj)}: invalid sync wave "${raw}" in annotation ${key}: must be an integer`,
    ]);
  }
  return value;
}

/**
 * The sync wave of an object: `kube-actions.dev/sync-wave`, else `argocd.argoproj.io/sync-wave`,
 * else `helm.sh/hook-weight` (gitops-engine syncwaves.Wave reads the Helm weight for any object),
 * else 0. Deviation: Argo silently falls back on an unparsable value; we throw SyncPlanError naming
 * the object, since a typo would otherwise reorder the sync.
 */
export function syncWave(obj: KubeResource): number {
  return (
    parseWave(obj, ANNOTATION_KUBE_ACTIONS_SYNC_WAVE) ??
    parseWave(obj, ANNOTATION_SYNC_WAVE) ??
    parseWave(obj, ANNOTATION_HELM_HOOK_WEIGHT) ??
    0
  );
}

/**
 * Kind order within a wave (gitops-engine sync_tasks.go kindOrder, from Helm's kind_sorter.go).
 * Kinds not listed, custom resources among them, go after all of these.
 */
export const KIND_ORDER: readonly string[] = [
  'Namespace',
  'NetworkPolicy',
  'ResourceQuota',
  'LimitRange',
  'PodSecurityPolicy',
  'PodDisruptionBudget',
  'ServiceAccount',
  'Secret',
  'SecretList',
  'ConfigMap',
  'StorageClass',
  'PersistentVolume',
  'PersistentVolumeClaim',
  'CustomResourceDefinition',
  'ClusterRole',
  'ClusterRoleList',
  'ClusterRoleBinding',
  'ClusterRoleBindingList',
  'Role',
  'RoleList',
  'RoleBinding',
  'RoleBindingList',
  'Service',
  'DaemonSet',
  'Pod',
  'ReplicationController',
  'ReplicaSet',
  'Deployment',
  'HorizontalPodAutoscaler',
  'StatefulSet',
  'Job',
  'CronJob',
  'IngressClass',
  'Ingress',
  'APIService',
];
const KIND_RANK = new Map(KIND_ORDER.map((k, i) => [k, i]));

/** Position of a kind in KIND_ORDER; every unknown kind shares the last rank. */
export function kindOrder(kind: string): number {
  return KIND_RANK.get(kind) ?? KIND_ORDER.length;
}

// --- sync options -------------------------------------------------------------------------------

export type PropagationPolicy = 'foreground' | 'background' | 'orphan';

/**
 * Sync options, from an Application's `syncPolicy.syncOptions` or an object's
 * `argocd.argoproj.io/sync-options` annotation (Argo CD sync-options.md). A field is undefined when
 * the option is not given, so an object's setting can override the application's.
 */
export interface SyncOptions {
  /** `Prune=false` keeps the object when it leaves git; `Prune=confirm` waits for a confirmation. */
  prune?: boolean | 'confirm';
  /** `Delete=false` keeps the object when the whole application is deleted; not used by a sync. */
  delete?: boolean | 'confirm';
  pruneLast?: boolean;
  createNamespace?: boolean;
  applyOutOfSyncOnly?: boolean;
  serverSideApply?: boolean;
  /** `Replace=true`: kubectl replace/create instead of apply. Parsed; not supported by our applier. */
  replace?: boolean;
  /** `Force=true`: delete and recreate. Parsed; not supported by our applier. */
  force?: boolean;
  validate?: boolean;
  skipDryRunOnMissingResource?: boolean;
  prunePropagationPolicy?: PropagationPolicy;
  respectIgnoreDifferences?: boolean;
  failOnSharedResource?: boolean;
  /** Entries not understood, kept verbatim for a warning (Argo ignores them). */
  unknown: string[];
}

type BooleanOption = Exclude<keyof SyncOptions, 'prune' | 'delete' | 'prunePropagationPolicy' | 'unknown'>;
const BOOLEAN_OPTIONS: Readonly<Record<string, BooleanOption>> = {
  PruneLast: 'pruneLast',
  CreateNamespace: 'createNamespace',
  ApplyOutOfSyncOnly: 'applyOutOfSyncOnly',
  ServerSideApply: 'serverSideApply',
  Replace: 'replace',
  Force: 'force',
  Validate: 'validate',
  SkipDryRunOnMissingResource: 'skipDryRunOnMissingResource',
  RespectIgnoreDifferences: 'respectIgnoreDifferences',
  FailOnSharedResource: 'failOnSharedResource',
};

/**
 * Parses sync options: a list (an Application's `syncOptions`) or a comma-separated annotation value.
 * Entries are `Name=value`, whitespace-trimmed; names and values are case-sensitive as in Argo.
 */
export function parseSyncOptions(input: string | readonly string[] | undefined): SyncOptions {
  const out: SyncOptions = { unknown: [] };
  const entries = typeof input === 'string' ? csv(input) : (input ?? []).map((s) => s.trim()).filter(Boolean);
  for (const entry of entries) {
    const eq = entry.indexOf('=');
    const name = eq < 0 ? entry : entry.slice(0, eq);
    const value = eq < 0 ? '' : entry.slice(eq + 1);
    const bool = value === 'true' ? true : value === 'false' ? false : undefined;
    const key = BOOLEAN_OPTIONS[name];
    if (key && bool !== undefined) out[key] = bool;
    else if ((name === 'Prune' || name === 'Delete') && (bool !== undefined || value === 'confirm')) {
      out[name === 'Prune' ? 'prune' : 'delete'] = bool ?? 'confirm';
    } else if (name === 'PrunePropagationPolicy' && ['foreground', 'background', 'orphan'].includes(value)) {
      out.prunePropagationPolicy = value as PropagationPolicy;
    } else out.unknown.push(entry);
  }
  return out;
}

/** The sync options an object's annotation sets. */
export function resourceSyncOptions(obj: KubeResource): SyncOptions {
  return parseSyncOptions(annotation(obj, ANNOTATION_SYNC_OPTIONS));
}

/** `argocd.argoproj.io/compare-options: IgnoreExtraneous`: a live-only object does not make the app OutOfSync. */
export function ignoresExtraneous(obj: KubeResource): boolean {
  return csv(annotation(obj, ANNOTATION_COMPARE_OPTIONS)).includes('IgnoreExtraneous');
}

// --- plan types ---------------------------------------------------------------------------------

interface TaskBase {
  /** `group/Kind/namespace/name`, the identity used to match desired and live objects. */
  key: string;
  group: string;
  kind: string;
  name: string;
  /** The namespace the object lives in; undefined for cluster-scoped kinds. */
  namespace?: string;
  phase: SyncPhase;
  wave: number;
}

export type ApplyMode = 'client-side-apply' | 'server-side-apply' | 'replace';

/** Apply a managed resource (create or update). */
export interface ApplyTask extends TaskBase {
  type: 'apply';
  object: KubeResource;
  live?: KubeResource;
  /** Replace=true wins over ServerSideApply=true (Argo CD sync-options.md). */
  mode: ApplyMode;
  force: boolean;
  validate: boolean;
  skipDryRunOnMissingResource: boolean;
  /** Added by CreateNamespace=true for the destination namespace, not from the manifests. */
  createdNamespace?: boolean;
}

/** Delete a live object that is no longer desired. */
export interface PruneTask extends TaskBase {
  type: 'prune';
  live: KubeResource;
  /** Prune=confirm: the controller must wait for an explicit confirmation first. */
  requiresConfirmation: boolean;
  /** Deletion propagation; foreground unless PrunePropagationPolicy says otherwise (Argo default). */
  propagationPolicy: PropagationPolicy;
  /** Moved to the final wave by PruneLast=true. */
  pruneLast: boolean;
  /** IgnoreExtraneous: its presence does not make the application OutOfSync. */
  ignoreExtraneous: boolean;
}

/** Create (apply) a hook object and wait for it to complete (a Job/Pod to succeed, etc.). */
export interface HookTask extends TaskBase {
  type: 'hook';
  hookType: SyncPhase;
  object: KubeResource;
  live?: KubeResource;
  deletePolicies: HookDeletePolicy[];
  mode: ApplyMode;
}

/** Delete the previous instance of a hook before creating it again (BeforeHookCreation). */
export interface HookDeleteTask extends TaskBase {
  type: 'hook-delete';
  live: KubeResource;
  reason: 'BeforeHookCreation';
}

export type SyncTask = ApplyTask | PruneTask | HookTask | HookDeleteTask;

/**
 * One wave: run its tasks in order (gitops-engine runTasks: prunes, then deletions of previous hook
 * instances, waiting for them to be gone, then applies and hooks by kind order), then wait for every
 * applied object to be healthy and every hook to complete before the next wave.
 */
export interface WavePlan {
  wave: number;
  tasks: SyncTask[];
}

export interface PhasePlan {
  phase: SyncPhase;
  waves: WavePlan[];
}

/** A PreDelete/PostDelete hook, run only when the application itself is deleted. */
export interface DeletionHook {
  hookType: 'PreDelete' | 'PostDelete';
  key: string;
  wave: number;
  object: KubeResource;
  deletePolicies: HookDeletePolicy[];
}

export interface SkippedObject {
  key: string;
  reason: string;
}

export interface UnsupportedOption {
  key: string;
  option: string;
}

export interface SyncPlan {
  /** PreSync, Sync, PostSync in order; phases without tasks are left out. */
  phases: PhasePlan[];
  /** Run only when the sync fails; undefined when there are no SyncFail hooks. */
  syncFail: PhasePlan | undefined;
  deletionHooks: DeletionHook[];
  /** Desired or live objects that get no task, and why (Skip, in sync, pruning disabled, ...). */
  skipped: SkippedObject[];
  /** Options that were asked for but that our applier does not implement (Replace, Force). */
  unsupported: UnsupportedOption[];
  warnings: string[];
  /** The application-level options the plan was made with. */
  options: SyncOptions;
}

export interface SyncPlanOptions {
  /** The application's destination namespace: the namespace of namespaced objects that set none. */
  namespace?: string;
  /** Application-level sync options, e.g. ['CreateNamespace=true', 'PruneLast=true']. */
  syncOptions?: readonly string[];
  /** Whether this sync may delete objects (Argo: automated.prune or a manual sync with prune). Default false. */
  prune?: boolean;
  /** Leave hooks out (Argo's skipHooks / a "sync without hooks"). */
  skipHooks?: boolean;
  /** The git revision being synced; part of the names given to `generateName` hooks. */
  revision?: string;
  /** When the sync operation started; required when a hook has only `generateName`. */
  startedAt?: Date;
  /**
   * Whether a kind is namespaced. Unknown answers fall back to a built-in list of cluster-scoped
   * kinds, then to namespaced (Argo's IsNamespacedOrUnknown).
   */
  isNamespaced?: (group: string, kind: string) => boolean | undefined;
  /** For ApplyOutOfSyncOnly=true: whether a desired object differs from its live counterpart. */
  isOutOfSync?: (desired: KubeResource, live: KubeResource) => boolean;
}

export interface SyncPlanInput {
  desired: readonly KubeResource[];
  /** The live objects the application manages (its tracked resources and previous hooks). */
  live?: readonly KubeResource[];
  options?: SyncPlanOptions;
}

// --- identity -----------------------------------------------------------------------------------

const CLUSTER_SCOPED: ReadonlySet<string> = new Set([
  '/Namespace',
  '/Node',
  '/PersistentVolume',
  '/ComponentStatus',
  'storage.k8s.io/StorageClass',
  'storage.k8s.io/CSIDriver',
  'storage.k8s.io/CSINode',
  'storage.k8s.io/VolumeAttachment',
  'apiextensions.k8s.io/CustomResourceDefinition',
  'apiregistration.k8s.io/APIService',
  'rbac.authorization.k8s.io/ClusterRole',
  'rbac.authorization.k8s.io/ClusterRoleBinding',
  'networking.k8s.io/IngressClass',
  'scheduling.k8s.io/PriorityClass',
  'node.k8s.io/RuntimeClass',
  'policy/PodSecurityPolicy',
  'certificates.k8s.io/CertificateSigningRequest',
  'admissionregistration.k8s.io/MutatingWebhookConfiguration',
  'admissionregistration.k8s.io/ValidatingWebhookConfiguration',
  'admissionregistration.k8s.io/ValidatingAdmissionPolicy',
  'admissionregistration.k8s.io/ValidatingAdmissionPolicyBinding',
  'flowcontrol.apiserver.k8s.io/FlowSchema',
  'flowcontrol.apiserver.k8s.io/PriorityLevelConfiguration',
]);

function namespaceOf(obj: KubeResource, options: SyncPlanOptions): string | undefined {
  const group = apiGroup(obj.apiVersion);
  const namespaced = options.isNamespaced?.(group, obj.kind) ?? !CLUSTER_SCOPED.has(`${group}/${obj.kind}`);
  if (!namespaced) return undefined;
  return obj.metadata.namespace || options.namespace || undefined;
}

function keyOf(group: string, kind: string, namespace: string | undefined, name: string): string {
  return `${group}/${kind}/${namespace ?? ''}/${name}`;
}

// --- planning -----------------------------------------------------------------------------------

/** A task while planning: `wave` and `phase` may still move (prune reversal, PruneLast, dependencies). */
type Draft = SyncTask & { order: number };

const PHASE_RANK: Readonly<Record<SyncPhase, number>> = { PreSync: 0, Sync: 1, PostSync: 2, SyncFail: 3 };

/** gitops-engine syncTasks.Less: phase, wave, kind order, name (then namespace and key, for a total order). */
function compareTasks(a: Draft, b: Draft): number {
  return (
    PHASE_RANK[a.phase] - PHASE_RANK[b.phase] ||
    a.wave - b.wave ||
    kindOrder(a.kind) - kindOrder(b.kind) ||
    cmp(a.name, b.name) ||
    cmp(a.namespace ?? '', b.namespace ?? '') ||
    cmp(a.key, b.key)
  );
}

function applyMode(obj: KubeResource, app: SyncOptions, own: SyncOptions): ApplyMode {
  if (app.replace || own.replace) return 'replace';
  // An object's ServerSideApply=false opts out of an application-wide ServerSideApply=true.
  if (own.serverSideApply === false) return 'client-side-apply';
  return app.serverSideApply || own.serverSideApply ? 'server-side-apply' : 'client-side-apply';
}

/**
 * The name of a hook that has only `generateName`, as gitops-engine derives it so it is stable for
 * the whole operation: generateName + first 7 characters of the revision + phase + start time.
 */
export function hookName(generateName: string, revision: string, phase: SyncPhase, startedAt: Date): string {
  const rev = revision.length >= 8 ? revision.slice(0, 7) : revision;
  return `${generateName}${`${rev}-${phase}-${Math.floor(startedAt.getTime() / 1000)}`.toLowerCase()}`;
}

/**
 * Plans a sync. Throws SyncPlanError listing every invalid desired object (missing name, invalid
 * wave, duplicate) rather than stopping at the first.
 */
export function planSync(input: SyncPlanInput): SyncPlan {
  const options = input.options ?? {};
  const app = parseSyncOptions(options.syncOptions);
  const problems: string[] = [];
  const warnings: string[] = app.unknown.map((o) => `unknown application sync option "${o}" ignored`);
  const skipped: SkippedObject[] = [];
  const unsupported: UnsupportedOption[] = [];
  const deletionHooks: DeletionHook[] = [];
  const drafts: Draft[] = [];
  let order = 0;

  const identify = (obj: KubeResource, name: string) => {
    const group = apiGroup(obj.apiVersion);
    const namespace = namespaceOf(obj, options);
    return { group, kind: obj.kind, name, namespace, key: keyOf(group, obj.kind, namespace, name) };
  };
  const waveOf = (obj: KubeResource): number | undefined => {
    try {
      return syncWave(obj);
    } catch (err) {
      if (!(err instanceof SyncPlanError)) throw err;
      problems.push(...err.problems);
      return undefined;
    }
  };
  const ownOptions = (obj: KubeResource, what: string): SyncOptions => {
    const own = resourceSyncOptions(obj);
    for (const o of own.unknown) warnings.push(`${what}: unknown sync option "${o}" ignored`);
    return own;
  };

  // Live objects by key. Previous hook instances are matched too, for BeforeHookCreation.
  const live = new Map<string, KubeResource>();
  for (const obj of input.live ?? []) {
    const id = identify(obj, obj.metadata.name ?? '');
    if (live.has(id.key)) warnings.push(`live ${describeObject(obj)} listed twice; the first is used`);
    else live.set(id.key, obj);
  }

  // Desired objects: managed resources and hooks (gitops-engine Reconcile/splitHooks, getSyncTasks).
  const desiredKeys = new Set<string>();
  for (const obj of input.desired) {
    const what = describeObject(obj);
    if (typeof obj.apiVersion !== 'string' || !obj.apiVersion || typeof obj.kind !== 'string' || !obj.kind) {
      problems.push(`${what}: apiVersion and kind are required`);
      continue;
    }
    const types = hookTypes(obj);
    if (isSkipped(obj)) {
      // Still desired, so a live counterpart is not pruned; just never applied (syncPhases is empty).
      const id = identify(obj, obj.metadata.name ?? '');
      desiredKeys.add(id.key);
      skipped.push({ key: id.key, reason: `${ANNOTATION_HOOK}: Skip` });
      continue;
    }
    const wave = waveOf(obj);
    const hook = isHook(obj);
    const name = obj.metadata.name;
    if (!name && !(hook && obj.metadata.generateName)) {
      // Hooks may use generateName (Argo supports it); a managed resource needs a stable name to be tracked.
      problems.push(
        `${what}: metadata.name is required${hook ? ' (or metadata.generateName for a hook)' : ''}`,
      );
      continue;
    }
    if (wave === undefined) continue;
    const own = ownOptions(obj, what);

    if (!hook) {
      const id = identify(obj, name!);
      if (desiredKeys.has(id.key)) {
        problems.push(`${what}: defined more than once`);
        continue;
      }
      desiredKeys.add(id.key);
      const mode = applyMode(obj, app, own);
      noteUnsupported(unsupported, id.key, mode, app.force || own.force);
      drafts.push({
        type: 'apply',
        ...id,
        phase: 'Sync',
        wave,
        object: obj,
        live: live.get(id.key),
        mode,
        force: Boolean(app.force || own.force),
        validate: own.validate ?? app.validate ?? true,
        skipDryRunOnMissingResource: Boolean(
          own.skipDryRunOnMissingResource ?? app.skipDryRunOnMissingResource,
        ),
        order: order++,
      });
      continue;
    }

    // A hook with no recognised type (a typo, a Helm test hook) is ignored (gitops-engine ignore.Ignore).
    const recognised = types.filter((t) => t !== 'Skip');
    if (recognised.length === 0) {
      const helm = annotation(obj, ANNOTATION_HELM_HOOK);
      const reason =
        annotation(obj, ANNOTATION_HOOK) !== undefined
          ? `no known hook type in ${ANNOTATION_HOOK}: "${annotation(obj, ANNOTATION_HOOK)}"`
          : `Helm hook "${helm}" has no Argo CD equivalent`;
      skipped.push({ key: identify(obj, name ?? obj.metadata.generateName ?? '').key, reason });
      if (annotation(obj, ANNOTATION_HOOK) !== undefined)
        warnings.push(`${what}: ${reason}; the hook is ignored`);
      continue;
    }
    const deletePolicies = hookDeletePolicies(obj);
    for (const p of unknownDeletePolicies(obj))
      warnings.push(`${what}: unknown hook delete policy "${p}" ignored`);
    for (const t of recognised) {
      if (t === 'PreDelete' || t === 'PostDelete') {
        deletionHooks.push({
          hookType: t,
          key: identify(obj, name ?? obj.metadata.generateName!).key,
          wave,
          object: obj,
          deletePolicies,
        });
      }
    }
    if (options.skipHooks) {
      if (recognised.some((t) => t !== 'PreDelete' && t !== 'PostDelete')) {
        skipped.push({ key: identify(obj, name ?? obj.metadata.generateName!).key, reason: 'hooks skipped' });
      }
      continue;
    }
    for (const phase of SYNC_PHASES.filter((p) => recognised.includes(p))) {
      let object = obj;
      let hookObjectName = name;
      if (!hookObjectName) {
        if (!options.startedAt) {
          problems.push(
            `${what}: a hook with only metadata.generateName needs options.startedAt to derive its name`,
          );
          continue;
        }
        hookObjectName = hookName(
          obj.metadata.generateName!,
          options.revision ?? '',
          phase,
          options.startedAt,
        );
        object = { ...obj, metadata: { ...obj.metadata, name: hookObjectName } };
      }
      const id = identify(obj, hookObjectName);
      const mode = applyMode(obj, app, own);
      noteUnsupported(unsupported, id.key, mode, false);
      const previous = live.get(id.key);
      drafts.push({
        type: 'hook',
        ...id,
        phase,
        wave,
        hookType: phase,
        object,
        live: previous,
        deletePolicies,
        mode,
        order: order++,
      });
      if (previous && deletePolicies.includes('BeforeHookCreation')) {
        drafts.push({
          type: 'hook-delete',
          ...id,
          phase,
          wave,
          live: previous,
          reason: 'BeforeHookCreation',
          order: order++,
        });
      }
    }
  }

  // CreateNamespace=true: a PreSync task for the destination namespace unless the manifests define
  // it (gitops-engine autoCreateNamespace). Applying it when it exists is harmless.
  if (app.createNamespace && options.namespace) {
    const ns: KubeResource = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: options.namespace } };
    const id = identify(ns, options.namespace);
    if (!desiredKeys.has(id.key)) {
      drafts.push({
        type: 'apply',
        ...id,
        phase: 'PreSync',
        wave: 0,
        object: ns,
        live: live.get(id.key),
        mode: applyMode(ns, app, { unknown: [] }),
        force: false,
        validate: app.validate ?? true,
        skipDryRunOnMissingResource: false,
        createdNamespace: true,
        order: order++,
      });
    }
  }

  // Prune candidates: live objects no longer desired. Live hooks and Skip objects are never pruned
  // (getSyncTasks skips hook objects; syncPhases of a Skip object is empty).
  const prunes: (PruneTask & { order: number })[] = [];
  for (const [key, obj] of live) {
    if (desiredKeys.has(key) || isHook(obj)) continue;
    if (isSkipped(obj)) {
      skipped.push({ key, reason: `${ANNOTATION_HOOK}: Skip (not pruned)` });
      continue;
    }
    let wave = 0;
    try {
      wave = syncWave(obj);
    } catch (err) {
      if (!(err instanceof SyncPlanError)) throw err;
      // A bad annotation on a live object must not block the sync; prune it in wave 0.
      warnings.push(`${err.message}; pruned in wave 0`);
    }
    const own = ownOptions(obj, `live ${describeObject(obj)}`);
    const id = identify(obj, obj.metadata.name ?? '');
    prunes.push({
      type: 'prune',
      ...id,
      phase: 'Sync',
      wave,
      live: obj,
      requiresConfirmation: (own.prune ?? app.prune) === 'confirm',
      propagationPolicy: app.prunePropagationPolicy ?? 'foreground',
      pruneLast: Boolean(app.pruneLast || own.pruneLast),
      ignoreExtraneous: ignoresExtraneous(obj),
      order: order++,
    });
  }

  if (problems.length > 0) throw new SyncPlanError(problems);

  // Prune waves run in reverse creation order: the set of prune waves is mirrored, lowest ↔ highest
  // (gitops-engine getSyncTasks "symmetric swap on prune waves").
  const pruneWaves = [...new Set(prunes.map((p) => p.wave))].sort((a, b) => a - b);
  const mirrored = new Map(pruneWaves.map((w, i) => [w, pruneWaves[pruneWaves.length - 1 - i]!]));
  for (const p of prunes) p.wave = mirrored.get(p.wave)!;

  // PruneLast (application option or the live object's annotation): one wave after the last Sync-phase
  // wave, prunes included, and never before wave 1 (gitops-engine starts that maximum at 0).
  const lastSyncWave = Math.max(
    0,
    ...[...drafts, ...prunes].filter((t) => t.phase === 'Sync').map((t) => t.wave),
  );
  for (const p of prunes) if (p.pruneLast) p.wave = lastSyncWave + 1;

  // Prunes disabled for this sync, or by Prune=false, get no task (Argo marks them PruneSkipped).
  for (const p of prunes) {
    const own = resourceSyncOptions(p.live);
    const policy = own.prune ?? app.prune;
    if (!options.prune)
      skipped.push({ key: p.key, reason: 'not pruned: pruning is not enabled for this sync' });
    else if (policy === false) skipped.push({ key: p.key, reason: 'not pruned: Prune=false' });
    else drafts.push(p);
  }

  // ApplyOutOfSyncOnly=true (application level only, as in Argo): skip objects that exist and do not
  // differ. Hooks and prunes always run. Done after wave arithmetic, as Argo filters at run time.
  let tasks = drafts;
  if (app.applyOutOfSyncOnly) {
    const isOutOfSync = options.isOutOfSync;
    if (!isOutOfSync)
      throw new SyncPlanError(['ApplyOutOfSyncOnly=true needs options.isOutOfSync to compare objects']);
    tasks = drafts.filter((t) => {
      if (t.type !== 'apply' || !t.live || isOutOfSync(t.object, t.live)) return true;
      skipped.push({ key: t.key, reason: 'in sync (ApplyOutOfSyncOnly)' });
      return false;
    });
  }

  tasks.sort(compareTasks);
  adjustDependencies(tasks);

  const phase = (p: SyncPhase): PhasePlan | undefined => {
    const inPhase = tasks.filter((t) => t.phase === p);
    if (inPhase.length === 0) return undefined;
    const waves = [...new Set(inPhase.map((t) => t.wave))].sort((a, b) => a - b);
    return {
      phase: p,
      waves: waves.map((w) => ({ wave: w, tasks: orderWave(inPhase.filter((t) => t.wave === w)) })),
    };
  };

  return {
    phases: (['PreSync', 'Sync', 'PostSync'] as const).flatMap((p) => phase(p) ?? []),
    syncFail: phase('SyncFail'),
    deletionHooks: deletionHooks.sort(
      (a, b) =>
        Number(a.hookType === 'PostDelete') - Number(b.hookType === 'PostDelete') ||
        a.wave - b.wave ||
        kindOrder(a.object.kind) - kindOrder(b.object.kind) ||
        cmp(a.key, b.key),
    ),
    skipped,
    unsupported,
    warnings,
    options: app,
  };
}

function noteUnsupported(
  list: UnsupportedOption[],
  key: string,
  mode: ApplyMode,
  force: boolean | undefined,
): void {
  if (mode === 'replace') list.push({ key, option: 'Replace=true' });
  if (force) list.push({ key, option: 'Force=true' });
}

/**
 * gitops-engine syncTasks.Sort's adjustDeps, run twice on the sorted list: a Namespace, then a CRD,
 * that comes after the first object depending on it (an object in that namespace; a resource of that
 * group/kind) is moved just before it and takes its phase and wave. So a Namespace in wave 5 is
 * still created before a wave-0 Deployment inside it, even for a PreSync hook in it. Prunes are not
 * moved (they have no desired object).
 */
function adjustDependencies(tasks: Draft[]): void {
  const isCreate = (t: Draft): t is Draft & (ApplyTask | HookTask) => t.type === 'apply' || t.type === 'hook';
  const namespaceDep = (t: Draft) => (t.group === '' && t.kind === 'Namespace' ? t.name : undefined);
  const namespaceRef = (t: Draft) => t.namespace;
  const crdDep = (t: Draft & (ApplyTask | HookTask)) => {
    if (t.group !== 'apiextensions.k8s.io' || t.kind !== 'CustomResourceDefinition') return undefined;
    const group = field(t.object.spec, 'group');
    const kind = field(t.object.spec, 'names', 'kind');
    return typeof group === 'string' && typeof kind === 'string' ? `${group}/${kind}` : undefined;
  };
  const crdRef = (t: Draft) => `${t.group}/${t.kind}`;

  const adjust = (
    isDep: (t: Draft & (ApplyTask | HookTask)) => string | undefined,
    ref: (t: Draft) => string | undefined,
  ) => {
    const firstReferrer = new Map<string, number>();
    for (let i = 0; i < tasks.length; i++) {
      const t = tasks[i]!;
      if (!isCreate(t)) continue;
      const dep = isDep(t);
      if (dep !== undefined) {
        const index = firstReferrer.get(dep);
        if (index === undefined) continue;
        const referrer = tasks[index]!;
        t.phase = referrer.phase;
        t.wave = referrer.wave;
        tasks.splice(i, 1);
        tasks.splice(index, 0, t);
        for (const [k, v] of firstReferrer) if (v >= index) firstReferrer.set(k, v + 1);
      } else {
        const r = ref(t);
        if (r !== undefined && !firstReferrer.has(r)) firstReferrer.set(r, i);
      }
    }
  };
  adjust(namespaceDep, namespaceRef);
  adjust(crdDep, crdRef);
}

const TASK_STEP: Readonly<Record<SyncTask['type'], number>> = {
  prune: 0,
  'hook-delete': 1,
  apply: 2,
  hook: 2,
};

/**
 * Task order inside a wave, as gitops-engine runTasks executes it: prunes first, then deletions of
 * previous hook instances, then creates in sorted (kind, name) order. Deviation: prunes run in
 * reverse kind order (a Deployment before its ServiceAccount, a CR before its CRD); Argo prunes a
 * wave in forward kind order, all at once.
 */
function orderWave(tasks: Draft[]): SyncTask[] {
  const sorted = tasks
    .map((t, i) => ({ t, i }))
    .sort((a, b) => {
      const step = TASK_STEP[a.t.type] - TASK_STEP[b.t.type];
      if (step !== 0) return step;
      if (a.t.type === 'prune')
        return kindOrder(b.t.kind) - kindOrder(a.t.kind) || cmp(a.t.name, b.t.name) || cmp(a.t.key, b.t.key);
      return a.i - b.i;
    });
  return sorted.map(({ t }) => {
    const { order: _order, ...task } = t;
    return task;
  });
}

/**
 * The hooks to delete once the sync has finished, by the outcome of the whole operation (Argo
 * deletes HookSucceeded hooks when the sync succeeds and HookFailed hooks when it fails, not by
 * each hook's own result).
 */
export function hooksToDeleteAfterSync(plan: SyncPlan, outcome: 'succeeded' | 'failed'): HookTask[] {
  const policy: HookDeletePolicy = outcome === 'succeeded' ? 'HookSucceeded' : 'HookFailed';
  const phases = outcome === 'failed' && plan.syncFail ? [...plan.phases, plan.syncFail] : plan.phases;
  return phases
    .flatMap((p) => p.waves.flatMap((w) => w.tasks))
    .filter((t): t is HookTask => t.type === 'hook' && t.deletePolicies.includes(policy));
}

/** A resource named by a selective sync (Argo CD's operation.sync.resources). */
export interface SelectedResource {
  group?: string;
  kind: string;
  name: string;
  namespace?: string;
}

/**
 * The plan of a selective sync (https://argo-cd.readthedocs.io/en/stable/user-guide/selective_sync/):
 * only the applies and prunes of the resources named, no hooks (as Argo CD, which runs none in a
 * selective sync), waves and phases left empty dropped. A namespace matches only when named.
 */
export function selectResources(plan: SyncPlan, selected: readonly SelectedResource[]): SyncPlan {
  const matches = (t: SyncTask) =>
    (t.type === 'apply' || t.type === 'prune') &&
    selected.some(
      (s) =>
        (s.group ?? '') === t.group &&
        s.kind === t.kind &&
        s.name === t.name &&
        (!s.namespace || s.namespace === (t.namespace ?? '')),
    );
  return {
    ...plan,
    phases: plan.phases
      .map((p) => ({
        ...p,
        waves: p.waves.map((w) => ({ ...w, tasks: w.tasks.filter(matches) })).filter((w) => w.tasks.length),
      }))
      .filter((p) => p.waves.length),
    syncFail: undefined,
  };
}
