// The Application resource (kube-actions.dev/v1alpha1), with Argo CD's field names: an Argo CD
// Application converts by changing its apiVersion. deploy/crds/application.yaml is its schema.
import type { HealthStatusCode } from '../../core/kube/health.ts';
import type { IgnoreDifference } from '../../core/kube/ignore-differences.ts';
import type { OwnerReference, ResourceRef } from '../../core/kube/objects.ts';

export const GROUP = 'kube-actions.dev';
export const APPLICATION: ResourceRef = {
  apiVersion: `${GROUP}/v1alpha1`,
  resource: 'applications',
  namespaced: true,
};

/** Argo CD's cascade-delete finalizer, honoured as is, and ours. */
export const RESOURCES_FINALIZERS = [
  'resources-finalizer.argocd.argoproj.io',
  'resources-finalizer.argocd.argoproj.io/background',
  'resources-finalizer.argocd.argoproj.io/foreground',
  `${GROUP}/resources-finalizer`,
];
/** Argo CD's refresh request annotation (`normal` or `hard`). */
export const REFRESH_ANNOTATION = 'argocd.argoproj.io/refresh';

export interface ApplicationSource {
  repoURL: string;
  targetRevision?: string;
  path?: string;
  chart?: string;
  helm?: {
    releaseName?: string;
    valueFiles?: string[];
    values?: string;
    valuesObject?: Record<string, unknown>;
    parameters?: { name?: string; value?: string; forceString?: boolean }[];
    namespace?: string;
    kubeVersion?: string;
    apiVersions?: string[];
  };
  kustomize?: { images?: string[]; namePrefix?: string; nameSuffix?: string; namespace?: string };
  directory?: { recurse?: boolean; include?: string; exclude?: string };
  plugin?: unknown;
  /** In spec.sources: the name a `$ref/path` Helm values file of another source uses for this one. */
  ref?: string;
  /** In spec.sources: a name shown for the source (Argo CD's, informational). */
  name?: string;
}

export interface SyncPolicy {
  automated?: { prune?: boolean; selfHeal?: boolean; allowEmpty?: boolean; enabled?: boolean };
  syncOptions?: string[];
  retry?: { limit?: number; backoff?: { duration?: string; factor?: number; maxDuration?: string } };
}

export interface SyncOperation {
  sync?: {
    revision?: string;
    /** Multiple sources: one revision per source, in spec.sources' order ('' = its targetRevision). */
    revisions?: string[];
    prune?: boolean;
    dryRun?: boolean;
    syncOptions?: string[];
    resources?: { group?: string; kind: string; name: string; namespace?: string }[];
    /** Self-heal attempts of this revision so far, this one included (Argo CD's SelfHealAttemptsCount). */
    autoHealAttemptsCount?: number;
  };
  initiatedBy?: { username?: string; automated?: boolean };
  retry?: SyncPolicy['retry'];
}

/** One object the application manages (Argo CD's ResourceStatus). */
export interface ResourceStatus {
  group: string;
  version: string;
  kind: string;
  namespace: string;
  name: string;
  status?: 'Synced' | 'OutOfSync' | 'Unknown';
  health?: { status: HealthStatusCode; message?: string };
  hook?: boolean;
  requiresPruning?: boolean;
}

/** One object's outcome in a sync (Argo CD's ResourceResult). */
export interface ResourceResult {
  group: string;
  version: string;
  kind: string;
  namespace: string;
  name: string;
  status: 'Synced' | 'SyncFailed' | 'Pruned' | 'PruneSkipped';
  message: string;
  hookType?: string;
  /**
   * The state of the hook, or of any other object's part in the operation (as in Argo CD): a
   * hook is Running until it finishes; an object that became Degraded, or never healthy in time,
   * is Failed.
   */
  hookPhase?: 'Running' | 'Succeeded' | 'Failed' | 'Error' | 'Terminating';
  syncPhase: string;
}

/**
 * The last or the running operation. While it runs (phase Running, no finishedAt) it is also the
 * whole memory of a sync in progress: the results say what was applied, pruned and created, and
 * `currentWave` how far it got, so whichever replica reconciles next carries on from there.
 */
export interface OperationState {
  operation: SyncOperation;
  phase: 'Running' | 'Succeeded' | 'Failed' | 'Error' | 'Terminating';
  message: string;
  syncResult?: { revision: string; resources: ResourceResult[] } & SourceFields;
  startedAt: string;
  finishedAt?: string;
  retryCount?: number;
  /** Ours, not Argo CD's: the wave a running operation has reached, and since when (for its timeout). */
  currentWave?: WaveMark;
}

export interface WaveMark {
  syncPhase: string;
  wave: number;
  startedAt: string;
}

export type HistoryEntry = {
  id: number;
  revision: string;
  deployedAt: string;
  deployStartedAt: string;
  initiatedBy?: SyncOperation['initiatedBy'];
} & SourceFields;

/**
 * What a status records of the sources: Argo CD's `source` and `revision` for one source, its
 * `sources` and `revisions` for several. With several, `revision` still holds the revisions
 * joined with ',' (ours: one value to compare, and no git SHA or chart version holds a comma).
 */
export interface SourceFields {
  source?: ApplicationSource;
  sources?: ApplicationSource[];
  revisions?: string[];
}

export interface AppCondition {
  type: string;
  message: string;
  lastTransitionTime: string;
}

export interface ApplicationStatus {
  sync?: {
    status: 'Synced' | 'OutOfSync' | 'Unknown';
    revision?: string;
    revisions?: string[];
    comparedTo?: { source?: ApplicationSource; sources?: ApplicationSource[]; destination: Destination };
  };
  health?: { status: HealthStatusCode; message?: string };
  resources?: ResourceStatus[];
  operationState?: OperationState;
  history?: HistoryEntry[];
  conditions?: AppCondition[];
  reconciledAt?: string;
  observedGeneration?: number;
  sourceType?: string;
  /** Multiple sources: each one's type, in spec.sources' order. */
  sourceTypes?: string[];
  summary?: { images?: string[] };
}

export interface Destination {
  server?: string;
  name?: string;
  namespace?: string;
}

export interface Application {
  apiVersion: string;
  kind: 'Application';
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    generation?: number;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    finalizers?: string[];
    /** An ApplicationSet's generated Applications are controlled by it. */
    ownerReferences?: OwnerReference[];
    deletionTimestamp?: string;
  };
  spec: {
    project?: string;
    source?: ApplicationSource;
    /** Argo CD's multiple sources: when set, spec.source is ignored. */
    sources?: ApplicationSource[];
    destination: Destination;
    syncPolicy?: SyncPolicy;
    /** Fields a comparison leaves out and a sync leaves as they are live (Argo CD's diffing customization). */
    ignoreDifferences?: IgnoreDifference[];
    revisionHistoryLimit?: number;
  };
  operation?: SyncOperation;
  status?: ApplicationStatus;
}

/** The sources an application renders: spec.sources when it has any (Argo CD ignores spec.source then). */
export function sourcesOf(app: Application): ApplicationSource[] {
  if (app.spec.sources?.length) return app.spec.sources;
  return app.spec.source ? [app.spec.source] : [];
}

/** Whether the application uses Argo CD's multiple sources. */
export function hasMultipleSources(app: Application): boolean {
  return (app.spec.sources?.length ?? 0) > 0;
}

/** The status fields that record a comparison or sync of `revision` (composite with several sources). */
export function sourceFields(app: Application, revision?: string): SourceFields {
  if (!hasMultipleSources(app)) return { source: app.spec.source! };
  return {
    sources: app.spec.sources!,
    ...(revision !== undefined ? { revisions: revision.split(',') } : {}),
  };
}

/**
 * A Helm values file of another source, `$ref/path` (multiple sources): its ref and path;
 * `undefined` for a file of the source itself, `'malformed'` for a `$` that is not `$ref/path`.
 */
export function refValueFile(file: string): { ref: string; path: string } | 'malformed' | undefined {
  if (!file.startsWith('$')) return undefined;
  const m = /^\$([^/]+)\/(.+)$/.exec(file);
  return m ? { ref: m[1]!, path: m[2]! } : 'malformed';
}
