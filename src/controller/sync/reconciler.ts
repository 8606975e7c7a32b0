// The Application reconciler: resolve the revision, render, compare with the cluster, sync when
// the policy (policy.ts) or a requested operation says so, and report sync and health status. All
// state is in the Application's status, so a restarted controller, or another replica, carries on
// where the last one stopped: a sync in progress is status.operationState in phase Running, and
// each reconcile advances it as far as it can without waiting (operation.ts), then returns a
// requeue. A reconcile holds no state of its own: its abort signal and logger come with the call.
//
// Safety rules, each enforced here: a failed render or comparison never applies or prunes
// anything; an empty render never prunes unless allowEmpty; only objects carrying this
// application's tracking id are pruned; a sync that fails part-way reports what it applied.
//
// Layout: reconcile (the flow); validation; comparison; operations (start, advance, finish);
// inventory and health; status and deletion; helpers.
import { stableJSON } from '../../core/json.ts';
import { ApplyError, digest, type ResolvedObject, type ResourceManager } from '../../core/kube/apply.ts';
import { UnknownKindError, type ResourceMapping, type RESTMapper } from '../../core/kube/discovery.ts';
import { assessHealth, worstHealth, type HealthStatus } from '../../core/kube/health.ts';
import type { KubeResource } from '../../core/kube/resource.ts';
import { apiGroup, describeObject } from '../../core/kube/resource.ts';
import {
  isHook,
  isSkipped,
  planSync,
  selectResources,
  SyncPlanError,
  type SyncPlan,
} from '../../core/kube/sync-plan.ts';
import { SourceError, type RepoCache } from '../../core/gitops/repo-cache.ts';
import { HelmRepositoryError, ociRepository } from '../../core/render/helm-repository.ts';
import type { KubeClient } from '../../core/kube/client.ts';
import { isConflict, isInvalid, isNotFound, PatchType } from '../../core/kube/client.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Logger } from '../runtime/log.ts';
import type { KubeObject, Request } from '../../core/kube/objects.ts';
import { resourcePath } from '../../core/kube/objects.ts';
import { Comparer, type ObjectComparison } from './compare.ts';
import {
  ClusterError,
  IN_CLUSTER_NAME,
  IN_CLUSTER_SERVER,
  resolveDestination,
  type ClusterAccess,
  type Clusters,
} from './clusters.ts';
import {
  IgnoreRuleError,
  ignoredPaths,
  overlay,
  rulesFor,
  type FieldPath,
} from '../../core/kube/ignore-differences.ts';
import { jqPaths } from '../../core/kube/jq-paths.ts';
import { jsonBytes, SizedLru } from '../../core/lru.ts';
import { owningApplication, type LiveObjects } from './live.ts';
import { advanceSyncPlan, appliedKeys, hookResult, prunedKeys, type Progress } from './operation.ts';
import {
  decideDeletionHooks,
  deletionFinalizers,
  deletionHookName,
  deletionHooksToDelete,
  isDeletionHook,
  POST_DELETE_CLEANUP_FINALIZER,
  POST_DELETE_FINALIZER,
  PRE_DELETE_FINALIZER,
  type DeletionHookState,
  type DeletionHookType,
} from './deletion.ts';
import {
  awaitsProgress,
  decideSync,
  type Backoff,
  type ComparisonSummary,
  type SyncDecision,
} from './policy.ts';
import {
  isTrackedBy,
  track,
  TRACKING_ANNOTATION,
  type DesiredState,
  type ManifestSource,
  type SourceRef,
} from './source.ts';
import {
  APPLICATION,
  REFRESH_ANNOTATION,
  RESOURCES_FINALIZERS,
  type AppCondition,
  hasMultipleSources,
  refValueFile,
  sourceFields,
  sourcesOf,
  type Application,
  type ApplicationSource,
  type ApplicationStatus,
  type HistoryEntry,
  type OperationState,
  type ResourceResult,
  type ResourceStatus,
  type SyncOperation,
} from './types.ts';

export { backoffMs } from './policy.ts';

export interface ApplicationReconcilerOptions {
  /** The cluster the controller runs in: Applications are written there, and it deploys there. */
  client: KubeClient;
  resources: ResourceManager;
  mapper: RESTMapper;
  repos: RepoCache;
  source: ManifestSource;
  live: LiveObjects;
  /** Destinations by cluster Secret; without it, only the cluster `client` speaks to. */
  clusters?: Clusters;
  /** For calls that bring no logger of their own (tests, the CLI's diff). */
  logger: Logger;
  /** Reads an Application (from the informer cache in the controller). */
  getApplication: (req: Request) => Promise<Application | undefined>;
  /** Kubernetes Events about Applications (sync started/finished, comparison errors). */
  events?: EventRecorder;
  /** Told how many server-side dry-runs a comparison sent (for metrics). */
  onDryRuns?: (n: number) => void;
  /** Told of every Application this reconciler wrote, with its new resourceVersion. */
  onWrite?: (app: Application) => void;
  /** How often to look at Git when nothing else happens (Argo CD: 3 minutes). */
  pollIntervalMs?: number;
  /** How soon to look again while something is progressing, a running sync included. */
  progressingRequeueMs?: number;
  /** How long one wave of a sync may take for its hooks to finish and its objects to be healthy. */
  waveTimeoutMs?: number;
  /** Self-heal backoff; Argo CD's defaults (2 s, ×3, at most 5 min) when omitted. */
  selfHealBackoff?: Backoff;
  /** A namespace-scoped install: deploy only namespaced objects, only into this namespace. */
  managedNamespace?: string;
  now?: () => Date;
}

/** What the runtime hands one reconcile (its ReconcileContext); nothing of it outlives the call. */
export interface ReconcileOptions {
  /** Aborts when this replica stops leading: nothing may be written after it. */
  signal?: AbortSignal;
  log?: Logger;
}

export interface ReconcileResult {
  requeueAfter?: number;
}

/** One reconcile's signal and logger, handed to whatever acts for it. */
interface Pass {
  signal: AbortSignal | undefined;
  log: Logger;
  /** The cluster the application deploys to. */
  cluster: ClusterAccess;
}

const HISTORY_LIMIT = 10;
/** Finalizers whose work needs the destination cluster. */
const OUR_FINALIZERS = new Set([
  ...RESOURCES_FINALIZERS,
  PRE_DELETE_FINALIZER,
  POST_DELETE_FINALIZER,
  POST_DELETE_CLEANUP_FINALIZER,
]);

/** Thrown (and so retried with backoff) when the cluster or the network failed, not the app. */
class TransientError extends Error {}

export interface Comparison {
  /** The resolved revision; with multiple sources, each source's joined with ',' in their order. */
  revision: string;
  sourceType: string;
  /** Multiple sources: each rendered source's type (Argo CD's status.sourceTypes). */
  sourceTypes?: string[];
  desired: ResolvedObject[];
  hooks: ResolvedObject[];
  objects: ObjectComparison[];
  /** Tracked live objects no longer desired. */
  extraneous: { resolved: ResolvedObject; live: KubeResource }[];
  errors: string[];
  warnings: string[];
  /**
   * Desired objects whose live copy carries another application's tracking id (Argo CD's
   * SharedResourceWarning): a sync would take them over, or fail with FailOnSharedResource=true.
   */
  shared: string[];
  /** Objects more than one source rendered (the last one's is used, Argo CD's RepeatedResourceWarning). */
  repeated: string[];
}

export class ApplicationReconciler {
  private readonly o: ApplicationReconcilerOptions;
  private readonly local: ClusterAccess;
  /** jqPathExpressions' paths by expression and object digest, a jq process saved per hit. */
  private readonly jqCache = new SizedLru<string, FieldPath[]>(4 * 1024 * 1024, (p) => jsonBytes(p) + 128);

  constructor(options: ApplicationReconcilerOptions) {
    this.o = options;
    this.local = options.clusters?.local ?? {
      name: IN_CLUSTER_NAME,
      server: IN_CLUSTER_SERVER,
      client: options.client,
      mapper: options.mapper,
      resources: options.resources,
      live: options.live,
      comparer: new Comparer(options.resources, options.onDryRuns),
    };
  }

  /** The cluster the controller runs in: its dry-run counts are what the tests read. */
  get comparer(): Comparer {
    return this.local.comparer;
  }

  /** The cluster an application deploys to (Argo CD's cluster Secrets), or ClusterError. */
  private async clusterOf(app: Application): Promise<ClusterAccess> {
    if (this.o.clusters) return this.o.clusters.access(app.spec.destination ?? {});
    // Without cluster Secrets (the CLI's diff): the cluster the kubeconfig names is the only one.
    // With no Secrets any other destination throws ClusterError.
    resolveDestination(app.spec.destination ?? {}, []);
    return this.local;
  }

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  private get pollMs(): number {
    return this.o.pollIntervalMs ?? 180_000;
  }

  private get progressingMs(): number {
    return this.o.progressingRequeueMs ?? 2000;
  }

  async reconcile(req: Request, ctx: ReconcileOptions = {}): Promise<ReconcileResult> {
    const app = await this.o.getApplication(req);
    if (!app) return {};
    const log = ctx.log ?? this.o.logger.child({ application: `${req.namespace}/${req.name}` });
    let cluster: ClusterAccess;
    try {
      cluster = await this.clusterOf(app);
    } catch (err) {
      if (!(err instanceof ClusterError)) throw err;
      // A cluster Secret may appear (or be fixed) at any time: look again soon.
      const again = { requeueAfter: Math.min(this.pollMs, 30_000) };
      const p: Pass = { signal: ctx.signal, log, cluster: this.local };
      if (app.metadata.deletionTimestamp) {
        if (!(app.metadata.finalizers ?? []).some((f) => OUR_FINALIZERS.has(f))) return {};
        await this.reportDeletion(app, `cannot reach the destination: ${err.message}`, p);
        return again;
      }
      const message = `destination: ${err.message}`;
      await this.reportFailure(
        app,
        message,
        {
          sync: { status: 'Unknown' },
          health: { status: 'Unknown', message },
          conditions: this.conditions(app, [{ type: 'InvalidSpecError', message }]),
        },
        p,
      );
      return again;
    }
    const p: Pass = { signal: ctx.signal, log, cluster };
    if (app.metadata.deletionTimestamp) return this.finalize(app, p);
    const poll = this.pollMs;

    const invalid = this.validate(app);
    if (invalid) {
      const failed: Partial<ApplicationStatus> = {
        sync: { status: 'Unknown' },
        health: { status: 'Unknown', message: invalid },
        conditions: this.conditions(app, [{ type: 'InvalidSpecError', message: invalid }]),
      };
      await this.reportFailure(app, invalid, failed, p);
      return {};
    }
    const refreshRequested = app.metadata.annotations?.[REFRESH_ANNOTATION] !== undefined;
    if (refreshRequested) await this.clearRefresh(app, p);
    const running = runningOperation(app);
    // A requested sync means "now": ask git for the branch's head rather than the cached answer.
    const refresh = refreshRequested || (app.operation !== undefined && !running);

    let comparison: Comparison;
    try {
      comparison = await this.compare(app, refresh, p, running?.syncResult?.revision);
    } catch (caught) {
      // Another cluster refusing or unreachable is the application's problem to show (Argo CD's
      // ComparisonError), not only a retry: its Secret may be wrong. Our own cluster's failures
      // are retried with backoff, since nothing could be written about them anyway.
      const err =
        caught instanceof ComparisonFailure || p.cluster === this.local
          ? caught
          : new ComparisonFailure(
              `cluster ${p.cluster.name} (${p.cluster.server}): ${(caught as Error).message}`,
              false,
            );
      if (!(err instanceof ComparisonFailure)) throw err;
      // Nothing is applied or pruned: the previous inventory and sync stay as they are.
      p.log.warn('comparison failed', { error: err.message });
      await this.o.events?.record(eventTarget(app), 'Warning', 'ComparisonError', err.message);
      const failed: Partial<ApplicationStatus> = {
        sync: { ...app.status?.sync, status: 'Unknown' },
        health: err.degrades
          ? { status: 'Degraded', message: err.message }
          : (app.status?.health ?? { status: 'Unknown' }),
        conditions: this.conditions(app, [{ type: 'ComparisonError', message: err.message }]),
      };
      await this.reportFailure(app, err.message, failed, p);
      return { requeueAfter: err.degrades ? poll : Math.min(poll, 30_000) };
    }

    // Deletion hooks in the desired state: the finalizers that make a deletion wait for them.
    await this.addFinalizers(app, deletionFinalizers(comparison.hooks.map((h) => h.object)), p);

    // One operation at a time: a running one goes on before anything new is decided.
    if (running) return this.advance(app, comparison, running, p);
    const decision = decideSync({
      app,
      comparison: summarize(comparison),
      now: this.now(),
      ...(this.o.selfHealBackoff ? { selfHealBackoff: this.o.selfHealBackoff } : {}),
    });
    p.log.debug('sync decision', { action: decision.action, reason: decision.reason });
    if (decision.action === 'sync') return this.startOperation(app, comparison, decision, p);

    const conditions = comparisonConditions(comparison);
    if (decision.action === 'none' && decision.error) {
      conditions.push({ type: 'SyncError', message: decision.error });
    }
    const health = this.health(comparison);
    await this.writeStatus(
      app,
      {
        ...app.status,
        sync: {
          status: isSynced(comparison) ? 'Synced' : 'OutOfSync',
          revision: comparison.revision,
          ...revisionsOf(app, comparison.revision),
          comparedTo: { ...sourcesField(app), destination: app.spec.destination },
        },
        health: { status: health.status, ...(health.message ? { message: health.message } : {}) },
        resources: this.resourceStatuses(comparison),
        conditions: this.conditions(app, conditions),
        ...sourceTypeFields(comparison),
        observedGeneration: app.metadata.generation,
      },
      p,
    );
    // The next look: when a backoff ends (a retry, a self-heal), and soon while objects progress.
    const soon = awaitsProgress(app, comparison.revision, comparison.objects, this.now());
    return { requeueAfter: this.nextLook(decision, soon ? this.progressingMs : poll) };
  }

  /** `otherwise`, or sooner when the decision waits for a time before then (at least 1 ms). */
  private nextLook(decision: SyncDecision, otherwise: number): number {
    if (decision.action !== 'wait') return otherwise;
    return Math.max(1, Math.min(decision.at.getTime() - this.now().getTime(), otherwise));
  }

  /** Writes a failure's status; a running or requested operation fails with it (and is cleared). */
  private async reportFailure(
    app: Application,
    message: string,
    failed: Partial<ApplicationStatus>,
    p: Pass,
  ): Promise<void> {
    const running = runningOperation(app);
    const operation = running?.operation ?? app.operation;
    if (!operation) {
      await this.writeStatus(app, { ...app.status, ...failed }, p);
      return;
    }
    const state: OperationState = running
      ? { ...running, phase: 'Failed', message }
      : {
          operation,
          phase: 'Failed',
          message,
          startedAt: this.now().toISOString(),
          syncResult: {
            revision: app.status?.operationState?.syncResult?.revision ?? '',
            resources: [],
            ...sourceFields(app),
          },
        };
    await this.writeOperation(app, undefined, state, p, failed);
  }

  // ---- validation -------------------------------------------------------------------------

  private validate(app: Application): string | undefined {
    const multi = hasMultipleSources(app);
    const sources = sourcesOf(app);
    if (!sources.length) return 'spec.source.repoURL is required';
    for (const [i, source] of sources.entries()) {
      const problem = validateSource(source, multi ? `spec.sources[${i}]` : 'spec.source');
      if (problem) return problem;
    }
    const refProblem = multi ? validateRefs(sources) : undefined;
    if (refProblem) return refProblem;
    // Settings that change what is rendered are refused rather than ignored: ignoring them would
    // apply something other than what the user described.
    const unsupported = sources.flatMap((s, i) =>
      unsupportedSourceFields(app, s, multi ? `sources[${i}]` : 'source'),
    );
    if (unsupported.length) return `not supported: ${[...new Set(unsupported)].join('; ')}`;
    const dest = app.spec.destination ?? {};
    const scope = this.o.managedNamespace;
    if (scope && (dest.namespace ?? '') !== scope) {
      return `this controller is installed namespace-scoped and deploys only to namespace ${scope}: destination.namespace is "${dest.namespace ?? ''}"`;
    }
    if (scope && app.spec.syncPolicy?.syncOptions?.includes('CreateNamespace=true')) {
      return `this controller is installed namespace-scoped (namespace ${scope}): CreateNamespace=true needs a cluster-scoped install`;
    }
    return undefined;
  }

  // ---- comparison ---------------------------------------------------------------------------

  /** What a sync would change, without changing anything (for `kube-actions app diff`). */
  async diff(app: Application): Promise<Comparison> {
    const invalid = this.validate(app);
    if (invalid) throw new ComparisonFailure(invalid, true);
    const cluster = await this.clusterOf(app).catch((err: unknown) => {
      throw err instanceof ClusterError ? new ComparisonFailure(err.message, false) : err;
    });
    return this.compare(app, true, { signal: undefined, log: this.o.logger, cluster });
  }

  /**
   * `pinned`: the revision of a running operation, which goes on with it wherever the branch is
   * now (with multiple sources, each source's, joined with ',').
   */
  private async compare(app: Application, refresh: boolean, p: Pass, pinned?: string): Promise<Comparison> {
    const destination = app.spec.destination.namespace ?? '';
    const multi = hasMultipleSources(app);
    const sources = sourcesOf(app);
    const pinnedEach = pinned ? pinned.split(',') : [];
    // A pin from before the sources were edited no longer lines up with them: resolve afresh.
    if (pinnedEach.length !== sources.length) pinnedEach.length = 0;
    const requested = multi ? (app.operation?.sync?.revisions ?? []) : [app.operation?.sync?.revision ?? ''];
    let revisions: string[];
    try {
      revisions = await Promise.all(
        sources.map((s, i) => this.resolveRevision(s, pinnedEach[i] || requested[i] || '', refresh, p)),
      );
    } catch (err) {
      if (err instanceof SourceError || err instanceof HelmRepositoryError)
        throw new ComparisonFailure(err.message, false);
      throw err;
    }
    const revision = revisions.join(',');
    // `$ref/path` values files read the ref sources at the commits resolved for them here.
    const refs: Record<string, SourceRef> = {};
    sources.forEach((s, i) => {
      if (s.ref) refs[s.ref] = { repoURL: s.repoURL, revision: revisions[i]! };
    });
    const rendered: DesiredState[] = [];
    for (const [i, source] of sources.entries()) {
      // A source with only a ref lends its files to the others and renders nothing (Argo CD's).
      if (multi && source.ref && !source.path && !source.chart) continue;
      const single = multi ? { ...app, spec: { ...app.spec, source, sources: [] } } : app;
      try {
        rendered.push(await this.o.source.desired(single, revisions[i]!, p.signal, refs));
      } catch (err) {
        if (err instanceof SourceError || err instanceof HelmRepositoryError)
          throw new ComparisonFailure(err.message, false);
        if (isRenderFailure(err))
          throw new ComparisonFailure(
            `rendering ${multi ? `source ${i + 1}: ` : ''}${source.chart ? `chart ${source.chart}` : source.path || '.'} at ${revisions[i]!.slice(0, 12)} failed: ${(err as Error).message}`,
            true,
          );
        throw err;
      }
    }
    const { objects: combined, repeated } = combineSources(rendered, destination);
    const desiredState = {
      sourceType: multi ? '' : (rendered[0]?.sourceType ?? ''),
      objects: combined,
      unsupported: rendered.flatMap((r) => r.unsupported),
    };
    const objects = desiredState.objects.filter((o) => !isSkipped(o));
    // Skipped objects are neither applied nor pruned: they still count as desired.
    const skippedKeys = new Set(
      desiredState.objects
        .filter((o) => isSkipped(o))
        .map(
          (o) =>
            `${apiGroup(o.apiVersion)}/${o.kind}/${o.metadata.namespace || destination}/${o.metadata.name ?? ''}`,
        ),
    );
    // Kinds whose CRD is part of this same render: they cannot be mapped until it is applied.
    const pendingKinds = new Set(
      objects
        .filter((o) => o.kind === 'CustomResourceDefinition')
        .map((o) => {
          const spec = o.spec as { group?: string; names?: { kind?: string } } | undefined;
          return `${spec?.group ?? ''}/${spec?.names?.kind ?? ''}`;
        }),
    );
    let resolved: ResolvedObject[];
    try {
      resolved = await p.cluster.resources.resolve(objects, destination, pendingKinds);
    } catch (err) {
      if (err instanceof ApplyError) throw new ComparisonFailure(err.message, true);
      throw err;
    }
    const outside = this.o.managedNamespace
      ? resolved.filter((r) => !r.mapping.namespaced || r.namespace !== this.o.managedNamespace)
      : [];
    if (outside.length) {
      // Refused before anything is applied: a partial sync would be worse than none.
      throw new ComparisonFailure(
        `this controller is installed namespace-scoped and manages only namespace ${this.o.managedNamespace}: ${outside
          .slice(0, 5)
          .map((r) =>
            r.mapping.namespaced ? `${r.key} is in another namespace` : `${r.key} is cluster-scoped`,
          )
          .join('; ')}${outside.length > 5 ? ` (and ${outside.length - 5} more)` : ''}`,
        true,
      );
    }
    const tracked = resolved.map((r) => ({ ...r, object: track(app, r.object, r.namespace) }));
    const hooks = tracked.filter((r) => isHook(r.object));
    const desired = tracked.filter((r) => !isHook(r.object));

    const live = await Promise.all(desired.map((r) => this.liveOf(r, p)));
    // Fields a Rollout controller owns on the Services it manages stay as they are.
    desired.forEach((r, i) => {
      const kept = keepRolloutSelector(r.object, live[i]);
      if (kept !== r.object) desired[i] = { ...r, object: kept };
    });
    const ignored = await this.ignoreDifferences(app, desired, live);
    const namespacesCreated = new Set(
      desired.filter((r) => r.object.kind === 'Namespace').map((r) => r.object.metadata.name),
    );
    if (app.spec.syncPolicy?.syncOptions?.includes('CreateNamespace=true') && destination)
      namespacesCreated.add(destination);
    const objectsCompared = await p.cluster.comparer.compare(
      desired.map((r, i) => ({ resolved: r, live: live[i], ignore: ignored[i] })),
      (r) =>
        namespacesCreated.has(r.namespace) ||
        pendingKinds.has(`${apiGroup(r.object.apiVersion)}/${r.object.kind}`),
    );
    const errors = objectsCompared
      .filter((c) => c.error !== undefined)
      .map((c) => `${describeObject(c.resolved.object, c.resolved.namespace)}: ${c.error}`);

    // Extraneous: in the last inventory, not desired now, still live and still ours.
    const desiredKeys = new Set([...tracked.map((r) => r.key), ...skippedKeys]);
    const extraneous: Comparison['extraneous'] = [];
    for (const entry of app.status?.resources ?? []) {
      if (entry.hook) continue;
      const apiVersion = entry.group ? `${entry.group}/${entry.version}` : entry.version;
      const k = `${entry.group}/${entry.kind}/${entry.namespace}/${entry.name}`;
      if (desiredKeys.has(k)) continue;
      const mapping = await this.mappingOrGone(apiVersion, entry.kind, p);
      if (!mapping) continue; // its CRD is gone, and so are its objects
      const r: ResolvedObject = {
        object: {
          apiVersion,
          kind: entry.kind,
          metadata: { name: entry.name, ...(entry.namespace ? { namespace: entry.namespace } : {}) },
        },
        mapping,
        namespace: entry.namespace,
        key: k,
      };
      const liveObj = await this.liveOf(r, p);
      if (liveObj && isTrackedBy(app, liveObj, entry.namespace))
        extraneous.push({ resolved: r, live: liveObj });
    }
    const shared = desired.flatMap((r, i) => {
      const l = live[i];
      if (!l?.metadata.annotations?.[TRACKING_ANNOTATION] || isTrackedBy(app, l, r.namespace)) return [];
      const owner = owningApplication(l);
      return [
        `${describeObject(r.object, r.namespace)} is part of application ${owner ? `${owner.namespace}/${owner.name}` : l.metadata.annotations[TRACKING_ANNOTATION]}`,
      ];
    });
    const warnings = desiredState.unsupported.map((u) => `not supported, ignored: ${u}`);
    return {
      revision,
      sourceType: desiredState.sourceType,
      ...(multi ? { sourceTypes: rendered.map((r) => r.sourceType) } : {}),
      repeated,
      desired,
      hooks,
      objects: objectsCompared,
      extraneous,
      errors,
      warnings,
      shared,
    };
  }

  /** One source's revision: a commit, or the chart version a range picks from the repository's index. */
  private async resolveRevision(
    source: ApplicationSource,
    requested: string,
    refresh: boolean,
    p: Pass,
  ): Promise<string> {
    if (source.chart) {
      if (!this.o.source.charts)
        throw new SourceError('Helm repository charts are not enabled in this controller');
      const constraint = requested || source.targetRevision || '';
      return (await this.o.source.charts.resolve(source.repoURL, source.chart, constraint, refresh)).version;
    }
    return this.o.repos.resolve(
      source.repoURL,
      requested || source.targetRevision || 'HEAD',
      refresh,
      p.signal,
    );
  }

  /** The resource of a kind, or undefined when the server no longer serves it (not on errors). */
  private async mappingOrGone(
    apiVersion: string,
    kind: string,
    p: Pass,
  ): Promise<ResourceMapping | undefined> {
    try {
      return await p.cluster.mapper.mapping(apiVersion, kind);
    } catch (err) {
      if (err instanceof UnknownKindError) return undefined;
      throw err;
    }
  }

  /**
   * spec.ignoreDifferences: for each desired object, the fields its rules ignore (left out of the
   * comparison), and, where the live object has them, the desired object takes their live values
   * (`desired` is updated in place), so a sync never resets them: Argo CD's
   * RespectIgnoreDifferences=true, always (see ignore-differences.ts for why).
   */
  private async ignoreDifferences(
    app: Application,
    desired: ResolvedObject[],
    live: readonly (KubeResource | undefined)[],
  ): Promise<(FieldPath[] | undefined)[]> {
    const rules = app.spec.ignoreDifferences ?? [];
    if (rules.length === 0) return [];
    return Promise.all(
      desired.map(async (r, i) => {
        const matching = rulesFor(rules, {
          group: apiGroup(r.object.apiVersion),
          kind: r.object.kind,
          name: r.object.metadata.name ?? '',
          namespace: r.namespace,
        });
        if (matching.length === 0) return undefined;
        let paths: FieldPath[];
        try {
          paths = ignoredPaths(matching, live[i]);
          // A jq expression names fields in the live object and in the desired one (a field only
          // the desired object has is left out of the comparison too).
          for (const expression of matching.flatMap((m) => m.jqPathExpressions ?? [])) {
            for (const obj of [live[i], r.object])
              if (obj) paths.push(...(await this.jqPathsOf(expression, obj)));
          }
        } catch (err) {
          if (!(err instanceof IgnoreRuleError)) throw err;
          throw new ComparisonFailure(`spec.ignoreDifferences: ${err.message}`, true);
        }
        if (live[i] && paths.length) desired[i] = { ...r, object: overlay(r.object, live[i], paths, false) };
        return paths;
      }),
    );
  }

  /** jq's answer for an expression over an object, remembered while the object is the same. */
  private async jqPathsOf(expression: string, obj: KubeResource): Promise<FieldPath[]> {
    const key = `${expression}\0${digest(obj)}`;
    const known = this.jqCache.get(key);
    if (known) return known;
    const paths = await jqPaths(expression, obj);
    this.jqCache.set(key, paths);
    return paths;
  }

  private async liveOf(r: ResolvedObject, p: Pass): Promise<KubeResource | undefined> {
    if (!r.mapping.resource) return undefined;
    try {
      return await p.cluster.live.get(r.mapping, r.namespace, r.object.metadata.name ?? '');
    } catch (err) {
      throw new TransientError(
        `reading live ${describeObject(r.object, r.namespace)}: ${(err as Error).message}`,
      );
    }
  }

  // ---- operations ----------------------------------------------------------------------------

  /** Starts the operation the policy asked for, and takes it as far as it goes now. */
  private async startOperation(
    app: Application,
    comparison: Comparison,
    decision: SyncDecision & { action: 'sync' },
    p: Pass,
  ): Promise<ReconcileResult> {
    const { operation } = decision;
    const state: OperationState = {
      operation,
      phase: 'Running',
      message: 'sync started',
      startedAt: this.now().toISOString(),
      syncResult: { revision: comparison.revision, resources: [], ...sourceFields(app, comparison.revision) },
      ...(decision.retryCount ? { retryCount: decision.retryCount } : {}),
    };
    const refused = refusal(operation, comparison, [
      ...(app.spec.syncPolicy?.syncOptions ?? []),
      ...(operation.sync?.syncOptions ?? []),
    ]);
    if (refused) return this.complete(app, comparison, { ...state, ...refused }, p);
    const who = operation.initiatedBy?.username ? `by ${operation.initiatedBy.username}` : 'automatically';
    await this.o.events?.record(
      eventTarget(app),
      'Normal',
      'OperationStarted',
      `sync to ${comparison.revision.slice(0, 12)} started ${who}`,
    );
    p.log.info('syncing', {
      revision: comparison.revision,
      reason: decision.reason,
      outOfSync: comparison.objects.filter((c) => !c.inSync).length,
      prune: comparison.extraneous.length,
    });
    // Not written yet: a sync that finishes in this pass (most do) is written once, when it is
    // done. One that goes on is written before it creates a hook (whose generateName its
    // startedAt sets) and whenever it stops to wait, so a controller that takes over finds it
    // running and carries it on; one cut short before either is simply started again, applying
    // the same objects (an apply is idempotent).
    return this.advance(app, comparison, state, p);
  }

  /** Does what is due in a running operation, records how far it got, and looks again soon. */
  private async advance(
    app: Application,
    comparison: Comparison,
    state: OperationState,
    p: Pass,
  ): Promise<ReconcileResult> {
    let planned: { plan: SyncPlan; resolved: Map<string, ResolvedObject> };
    try {
      planned = await this.plan(app, comparison, state, p);
    } catch (err) {
      if (!(err instanceof SyncPlanError)) throw err;
      return this.complete(app, comparison, { ...state, phase: 'Failed', message: err.message }, p);
    }
    let current = app;
    const destination = app.spec.destination.namespace ?? '';
    const step = await advanceSyncPlan(
      planned.plan,
      {
        results: state.syncResult?.resources ?? [],
        ...(state.currentWave ? { currentWave: state.currentWave } : {}),
      },
      {
        resources: p.cluster.resources,
        mapper: p.cluster.mapper,
        resolved: planned.resolved,
        owns: (live) => isTrackedBy(app, live, live.metadata.namespace ?? ''),
        resolveHook: async (obj) => {
          const [r] = await p.cluster.resources.resolve([obj], destination);
          return { ...r!, object: track(app, r!.object, r!.namespace) };
        },
        applied: (r, stored) => p.cluster.comparer.applied(r, stored),
        waveTimeoutMs: this.o.waveTimeoutMs ?? 300_000,
        now: () => this.now(),
        signal: p.signal,
        checkpoint: async (progress) => {
          current = await this.writeOperation(
            current,
            comparison,
            withProgress(state, progress, 'Running'),
            p,
          );
        },
      },
    );
    const next = withProgress(state, step, step.phase);
    if (step.phase !== 'Running') return this.complete(current, comparison, next, p);
    await this.writeOperation(current, comparison, next, p);
    p.log.debug('sync in progress', { message: step.message });
    // Hooks and objects this sync waits for are watched too: a change wakes it before this.
    return { requeueAfter: this.progressingMs };
  }

  /**
   * The plan of a running operation, made again from the comparison at each step: the same
   * revision and start time give the same tasks and hook names, and the recorded results say
   * which of them are done.
   */
  private async plan(
    app: Application,
    comparison: Comparison,
    state: OperationState,
    p: Pass,
  ): Promise<{ plan: SyncPlan; resolved: Map<string, ResolvedObject> }> {
    const operation = state.operation;
    const syncOptions = [...(app.spec.syncPolicy?.syncOptions ?? []), ...(operation.sync?.syncOptions ?? [])];
    const resolved = new Map<string, ResolvedObject>();
    const namespaced = new Map<string, boolean>();
    for (const r of [
      ...comparison.desired,
      ...comparison.hooks,
      ...comparison.extraneous.map((e) => e.resolved),
    ]) {
      resolved.set(r.key, r);
      namespaced.set(`${apiGroup(r.object.apiVersion)}/${r.object.kind}`, r.mapping.namespaced);
    }
    const liveByKey = new Map(comparison.objects.filter((c) => c.live).map((c) => [c.resolved.key, c.live!]));
    const hookLive = await Promise.all(
      comparison.hooks.filter((h) => h.object.metadata.name).map((h) => this.liveOf(h, p)),
    );
    // What this operation applied stays in its plan although it is in sync now
    // (ApplyOutOfSyncOnly): its wave still waits for it to become healthy.
    const applied = appliedKeys(state.syncResult?.resources ?? []);
    const planned = planSync({
      desired: [...comparison.desired, ...comparison.hooks].map((r) => r.object),
      live: [
        ...liveByKey.values(),
        ...comparison.extraneous.map((e) => e.live),
        ...hookLive.filter((h): h is KubeResource => !!h),
      ],
      options: {
        namespace: app.spec.destination.namespace ?? '',
        syncOptions,
        prune: operation.sync?.prune ?? false,
        revision: comparison.revision,
        startedAt: new Date(state.startedAt),
        isNamespaced: (group, kind) => namespaced.get(`${group}/${kind}`),
        isOutOfSync: (desired) => {
          const c = comparison.objects.find((o) => o.resolved.object === desired);
          return c ? !c.inSync || applied.has(c.resolved.key) : true;
        },
      },
    });
    // A selective sync applies and prunes what it names, nothing else, and runs no hooks.
    const selected = operation.sync?.resources;
    const plan = selected?.length ? selectResources(planned, selected) : planned;
    const destination = app.spec.destination.namespace ?? '';
    // The CreateNamespace=true task is not among the rendered objects: resolve it here.
    for (const task of plan.phases.flatMap((ph) => ph.waves.flatMap((w) => w.tasks))) {
      if (task.type === 'apply' && !resolved.has(task.key)) {
        const [r] = await p.cluster.resources.resolve([task.object], destination);
        resolved.set(task.key, r!);
      }
    }
    return { plan, resolved };
  }

  /** Records a finished operation and tells it as an Event. */
  private async complete(
    app: Application,
    comparison: Comparison,
    state: OperationState,
    p: Pass,
  ): Promise<ReconcileResult> {
    const written = await this.writeOperation(app, comparison, state, p);
    const rev = comparison.revision.slice(0, 12);
    const ok = state.phase === 'Succeeded';
    p.log.info('sync finished', {
      revision: comparison.revision,
      phase: state.phase,
      message: state.message,
    });
    await this.o.events?.record(
      eventTarget(app),
      ok ? 'Normal' : 'Warning',
      ok ? 'OperationCompleted' : 'SyncFailed',
      `sync to ${rev} ${state.phase.toLowerCase()}: ${state.message}`,
    );
    // Look again soon after a sync that applied: its objects are progressing, and the status
    // should show it. A failed one is looked at soon only if something it applied progresses
    // (one the server refused stays refused until something changes, and the watches, a new
    // commit or the poll bring that). A retry may be due sooner still: the policy, asked about
    // the operation just recorded, says when.
    const next = decideSync({
      app: written,
      comparison: summarize(comparison),
      now: this.now(),
      ...(this.o.selfHealBackoff ? { selfHealBackoff: this.o.selfHealBackoff } : {}),
    });
    if (!ok && next.action === 'none' && next.error) {
      // No retry is due: say so now (the next look may be an hour away), as a look would.
      await this.writeStatus(
        written,
        {
          ...written.status,
          conditions: this.conditions(written, [
            ...comparisonConditions(comparison),
            { type: 'SyncError', message: next.error },
          ]),
        },
        p,
      );
    }
    const soon = ok || awaitsProgress(written, comparison.revision, comparison.objects, this.now());
    return { requeueAfter: this.nextLook(next, soon ? this.progressingMs : this.pollMs) };
  }

  /**
   * Writes an operation's state with the status it implies: the inventory (whatever it applied is
   * tracked, whatever it pruned is not), sync and health; once it is done, its history entry too,
   * and the requested operation it ran is cleared. Returns the Application as written.
   */
  private async writeOperation(
    app: Application,
    comparison: Comparison | undefined,
    state: OperationState,
    p: Pass,
    /** Status fields that win over what the state implies (a comparison failure's). */
    override: Partial<ApplicationStatus> = {},
  ): Promise<Application> {
    const done = state.phase !== 'Running';
    const now = this.now().toISOString();
    const { currentWave, ...rest } = state;
    const operationState: OperationState = done
      ? { ...rest, finishedAt: now }
      : { ...rest, ...(currentWave ? { currentWave } : {}) };
    const dryRun = state.operation.sync?.dryRun === true;
    const succeeded = state.phase === 'Succeeded' && !dryRun;
    const revision = state.syncResult?.revision ?? '';
    const history = [...(app.status?.history ?? [])];
    // A selective sync is not a deployment of the revision: no history entry (as Argo CD).
    const selective = (state.operation.sync?.resources?.length ?? 0) > 0;
    if (done && succeeded && comparison && !selective) {
      const entry: HistoryEntry = {
        id: (history.at(-1)?.id ?? -1) + 1,
        revision,
        ...sourceFields(app, revision),
        deployedAt: now,
        deployStartedAt: state.startedAt,
        ...(state.operation.initiatedBy ? { initiatedBy: state.operation.initiatedBy } : {}),
      };
      history.push(entry);
    }
    const limit = app.spec.revisionHistoryLimit ?? HISTORY_LIMIT;
    const results = state.syncResult?.resources ?? [];
    const real = comparison && !dryRun ? comparison : undefined;
    const inventory = real ? this.inventory(real, results, succeeded) : app.status?.resources;
    const failure = state.phase === 'Failed' ? state.message : undefined;
    const health = real ? this.health(real, results, failure) : app.status?.health;
    const inSync = done
      ? succeeded && (!selective || (real !== undefined && isSyncedAfter(real, results)))
      : real !== undefined && isSynced(real);
    const warnings = comparison ? warningConditions(comparison) : [];
    const written = await this.writeStatus(
      app,
      {
        ...app.status,
        operationState,
        history: limit > 0 ? history.slice(-limit) : [],
        ...(inventory ? { resources: inventory } : {}),
        sync: dryRun
          ? (app.status?.sync ?? { status: 'Unknown' })
          : {
              status: inSync ? 'Synced' : 'OutOfSync',
              revision,
              ...revisionsOf(app, revision),
              comparedTo: { ...sourcesField(app), destination: app.spec.destination },
            },
        ...(health ? { health } : {}),
        ...(comparison ? sourceTypeFields(comparison) : {}),
        observedGeneration: app.metadata.generation,
        conditions: this.conditions(app, [
          ...warnings,
          ...(done && state.phase !== 'Succeeded' ? [{ type: 'SyncError', message: state.message }] : []),
        ]),
        ...override,
      },
      p,
    );
    if (done) await this.clearOperation(written, state.operation, p);
    return written;
  }

  /**
   * The requested operation is done: it is cleared, as Argo CD does, but only while it is still
   * the one that ran (the patch's test fails when someone asked for another meanwhile, which then
   * runs next).
   */
  private async clearOperation(app: Application, ran: SyncOperation, p: Pass): Promise<void> {
    if (!app.operation || stableJSON(app.operation) !== stableJSON(ran)) return;
    p.signal?.throwIfAborted();
    try {
      const written = await this.o.client.request<Application>(
        'PATCH',
        resourcePath(APPLICATION, app.metadata.namespace, app.metadata.name),
        {
          body: [
            { op: 'test', path: '/operation', value: ran },
            { op: 'remove', path: '/operation' },
          ],
          contentType: PatchType.json,
        },
      );
      this.o.onWrite?.(written);
    } catch (err) {
      if (!isInvalid(err) && !isConflict(err) && !isNotFound(err)) throw err;
    }
  }

  // ---- inventory and health ------------------------------------------------------------------

  /** What is desired now plus anything an operation applied, minus what it pruned. */
  private inventory(
    comparison: Comparison,
    results: readonly ResourceResult[],
    succeeded: boolean,
  ): ResourceStatus[] {
    const pruned = prunedKeys(results);
    const applied = appliedKeys(results);
    const inSync = new Map(comparison.objects.map((c) => [c.resolved.key, c.inSync]));
    const entries = new Map<string, ResourceStatus>();
    const add = (r: ResolvedObject, status: ResourceStatus['status'], extra: Partial<ResourceStatus> = {}) =>
      entries.set(r.key, {
        group: apiGroup(r.object.apiVersion),
        version: r.object.apiVersion.split('/').at(-1)!,
        kind: r.object.kind,
        namespace: r.namespace,
        name: r.object.metadata.name ?? '',
        ...(status ? { status } : {}),
        ...extra,
      });
    for (const r of comparison.desired) {
      add(r, succeeded || applied.has(r.key) || inSync.get(r.key) ? 'Synced' : 'OutOfSync');
    }
    for (const e of comparison.extraneous) {
      if (!pruned.has(e.resolved.key)) add(e.resolved, 'OutOfSync', { requiresPruning: true });
    }
    return [...entries.values()];
  }

  /** The application's health from its objects'; `failure`: a failed sync's message (Degraded). */
  private health(
    comparison: Comparison,
    results: readonly ResourceResult[] = [],
    failure?: string,
  ): HealthStatus {
    const applied = appliedKeys(results);
    const statuses: HealthStatus[] = [];
    for (const c of comparison.objects) {
      // Just applied: it is at best progressing until the watch shows its new state.
      if (applied.has(c.resolved.key) && !c.inSync) {
        statuses.push(assessHealth(c.merged ?? c.resolved.object) ?? { status: 'Healthy' });
        continue;
      }
      if (!c.live) {
        statuses.push({
          status: 'Missing',
          message: `${describeObject(c.resolved.object, c.resolved.namespace)} is missing`,
        });
        continue;
      }
      const h = assessHealth(c.live);
      // Name the object when it is what keeps the application from Healthy.
      if (h)
        statuses.push(
          h.message || h.status === 'Healthy'
            ? h
            : { ...h, message: `${describeObject(c.live)}: ${h.status}` },
        );
    }
    if (failure !== undefined) statuses.push({ status: 'Degraded', message: failure });
    return worstHealth(statuses);
  }

  private resourceStatuses(comparison: Comparison): ResourceStatus[] {
    const list: ResourceStatus[] = [];
    for (const c of comparison.objects) {
      const h = c.live ? assessHealth(c.live) : { status: 'Missing' as const };
      list.push({
        group: apiGroup(c.resolved.object.apiVersion),
        version: c.resolved.object.apiVersion.split('/').at(-1)!,
        kind: c.resolved.object.kind,
        namespace: c.resolved.namespace,
        name: c.resolved.object.metadata.name ?? '',
        status: c.inSync ? 'Synced' : 'OutOfSync',
        ...(h ? { health: { status: h.status, ...(h.message ? { message: h.message } : {}) } } : {}),
      });
    }
    for (const e of comparison.extraneous) {
      list.push({
        group: apiGroup(e.live.apiVersion),
        version: e.live.apiVersion.split('/').at(-1)!,
        kind: e.live.kind,
        namespace: e.resolved.namespace,
        name: e.live.metadata.name ?? '',
        status: 'OutOfSync',
        requiresPruning: true,
      });
    }
    return list;
  }

  // ---- status and deletion ---------------------------------------------------------------------

  /** Conditions with stable transition times: a condition that persists keeps its first time. */
  private conditions(app: Application, wanted: Omit<AppCondition, 'lastTransitionTime'>[]): AppCondition[] {
    const now = this.now().toISOString();
    return wanted.map((c) => {
      const same = app.status?.conditions?.find((p) => p.type === c.type && p.message === c.message);
      return { ...c, lastTransitionTime: same?.lastTransitionTime ?? now };
    });
  }

  /**
   * Writes status through the status subresource, and only when it changed (idle resyncs write
   * nothing). Returns the Application as written, for the next write of the same reconcile.
   */
  private async writeStatus(app: Application, status: ApplicationStatus, p: Pass): Promise<Application> {
    const next = { ...status };
    delete next.reconciledAt;
    const prev = { ...app.status };
    delete prev.reconciledAt;
    if (stableJSON(next) === stableJSON(prev)) return app;
    // A replica that stopped leading writes nothing more.
    p.signal?.throwIfAborted();
    // The whole status is replaced (a JSON merge patch would keep fields we dropped, such as a
    // health message that no longer applies). Status alone: no conflict with spec edits, and the
    // leader is its only writer.
    const written = await this.o.client.request<Application>(
      'PATCH',
      resourcePath(APPLICATION, app.metadata.namespace, app.metadata.name, 'status'),
      {
        body: [{ op: 'add', path: '/status', value: { ...next, reconciledAt: this.now().toISOString() } }],
        contentType: PatchType.json,
      },
    );
    this.o.onWrite?.(written);
    return written;
  }

  private async clearRefresh(app: Application, p: Pass): Promise<void> {
    p.signal?.throwIfAborted();
    const written = await this.o.client.patch<Application & KubeObject>(
      APPLICATION,
      app.metadata.namespace,
      app.metadata.name,
      { metadata: { annotations: { [REFRESH_ANNOTATION]: null } } },
      PatchType.merge,
    );
    this.o.onWrite?.(written);
  }

  /**
   * Deleting: PreDelete hooks, then the resources (with a resources finalizer), then PostDelete
   * hooks and their cleanup, each behind its finalizer (see deletion.ts); a finalizer is removed
   * once its step is done, and the next pass takes the next step.
   */
  private async finalize(app: Application, p: Pass): Promise<ReconcileResult> {
    const has = (f: string) => (app.metadata.finalizers ?? []).includes(f);
    if (has(PRE_DELETE_FINALIZER)) {
      const waiting = await this.runDeletionHooks(app, 'PreDelete', p);
      if (waiting) return waiting;
      await this.removeFinalizers(app, [PRE_DELETE_FINALIZER], p);
    }
    if ((app.metadata.finalizers ?? []).some((f) => RESOURCES_FINALIZERS.includes(f))) {
      const remaining = await this.deleteResources(app, p);
      if (remaining > 0) return { requeueAfter: 1000 };
      await this.removeFinalizers(app, RESOURCES_FINALIZERS, p);
    }
    if (has(POST_DELETE_FINALIZER)) {
      const waiting = await this.runDeletionHooks(app, 'PostDelete', p);
      if (waiting) return waiting;
      await this.removeFinalizers(app, [POST_DELETE_FINALIZER], p);
    }
    if (has(POST_DELETE_CLEANUP_FINALIZER)) {
      const hooks = await this.deletionHooks(app, 'PostDelete', p);
      if (!Array.isArray(hooks)) return hooks;
      const left = await this.deleteHooks(deletionHooksToDelete(hooks), p);
      if (left > 0) return { requeueAfter: 1000 };
      await this.removeFinalizers(app, [POST_DELETE_CLEANUP_FINALIZER], p);
    }
    return {};
  }

  /** Deletes the application's live, tracked resources; returns how many are still there. */
  private async deleteResources(app: Application, p: Pass): Promise<number> {
    let remaining = 0;
    for (const entry of app.status?.resources ?? []) {
      const apiVersion = entry.group ? `${entry.group}/${entry.version}` : entry.version;
      const mapping = await this.mappingOrGone(apiVersion, entry.kind, p);
      if (!mapping) continue;
      const live = await p.cluster.resources.get(mapping, entry.namespace, entry.name);
      if (!live || !isTrackedBy(app, live, entry.namespace)) continue;
      // Delete=false: the object outlives its application (Argo CD's sync option), e.g. a PVC.
      if (
        /(^|,)\s*Delete=false\s*(,|$)/.test(
          live.metadata.annotations?.['argocd.argoproj.io/sync-options'] ?? '',
        )
      )
        continue;
      remaining++;
      p.signal?.throwIfAborted();
      if (!live.metadata.deletionTimestamp) {
        await p.cluster.resources.delete(mapping, entry.namespace, entry.name, {
          ...(live.metadata.uid ? { uid: live.metadata.uid } : {}),
        });
      }
    }
    return remaining;
  }

  /**
   * The deletion hooks of one type, from the last synced revision's render, with what is live
   * under their names; or, when the render fails, the result that reports it and looks again.
   */
  private async deletionHooks(
    app: Application,
    type: DeletionHookType,
    p: Pass,
  ): Promise<(DeletionHookState & { resolved: ResolvedObject })[] | ReconcileResult> {
    let comparison: Comparison;
    try {
      const invalid = this.validate(app);
      if (invalid) throw new ComparisonFailure(invalid, true);
      comparison = await this.compare(app, false, p, app.status?.sync?.revision);
    } catch (err) {
      if (!(err instanceof ComparisonFailure)) throw err;
      const message = `cannot render the ${type} hooks: ${err.message}`;
      await this.reportDeletion(app, message, p);
      return { requeueAfter: Math.min(this.pollMs, 30_000) };
    }
    const deletedAt = app.metadata.deletionTimestamp ?? new Date(0).toISOString();
    const states: (DeletionHookState & { resolved: ResolvedObject })[] = [];
    for (const r of comparison.hooks.filter((h) => isDeletionHook(h.object, type))) {
      const name = deletionHookName(r.object, type, deletedAt);
      const { generateName: _generated, ...metadata } = r.object.metadata;
      const object = { ...r.object, metadata: { ...metadata, name } };
      const live = await p.cluster.resources.get(r.mapping, r.namespace, name);
      states.push({
        name,
        object,
        live,
        result: live ? hookResult(live) : undefined,
        resolved: { ...r, object, key: `${r.key.slice(0, r.key.lastIndexOf('/') + 1)}${name}` },
      });
    }
    return states;
  }

  /** One step of a deletion's hooks of `type`: a result while they are not done, else undefined. */
  private async runDeletionHooks(
    app: Application,
    type: DeletionHookType,
    p: Pass,
  ): Promise<ReconcileResult | undefined> {
    const hooks = await this.deletionHooks(app, type, p);
    if (!Array.isArray(hooks)) return hooks;
    const step = decideDeletionHooks(type, hooks);
    switch (step.action) {
      case 'create':
        for (const h of step.hooks) {
          p.signal?.throwIfAborted();
          try {
            await p.cluster.resources.apply((h as (typeof hooks)[number]).resolved);
          } catch (err) {
            if (!(err instanceof ApplyError)) throw err;
            await this.reportDeletion(
              app,
              `${type} hook ${h.object.kind}/${h.name}: ${err.problems.join('; ')}`,
              p,
            );
            return { requeueAfter: Math.min(this.pollMs, 30_000) };
          }
          p.log.info(`created ${type} hook`, { hook: `${h.object.kind}/${h.name}` });
          await this.o.events?.record(
            eventTarget(app),
            'Normal',
            'DeletionHook',
            `created ${type} hook ${h.object.kind}/${h.name}`,
          );
        }
        return { requeueAfter: 1000 };
      case 'wait':
        return { requeueAfter: 2000 };
      case 'blocked':
        p.log.warn('deletion stopped', { reason: step.message });
        await this.reportDeletion(app, step.message, p);
        return { requeueAfter: Math.min(this.pollMs, 30_000) };
      case 'done':
        // PreDelete hooks are cleaned up at once; PostDelete ones behind their cleanup finalizer.
        if (type === 'PreDelete') await this.deleteHooks(deletionHooksToDelete(hooks), p);
        return undefined;
    }
  }

  /** Deletes finished hooks (their delete policy says so); returns how many are still there. */
  private async deleteHooks(
    hooks: (DeletionHookState & { resolved?: ResolvedObject })[],
    p: Pass,
  ): Promise<number> {
    for (const h of hooks) {
      p.signal?.throwIfAborted();
      if (h.live?.metadata.deletionTimestamp || !h.resolved) continue;
      await p.cluster.resources.delete(h.resolved.mapping, h.resolved.namespace, h.name, {
        ...(h.live?.metadata.uid ? { uid: h.live.metadata.uid } : {}),
      });
    }
    return hooks.length;
  }

  /** A DeletionError condition and a Warning event: why the deletion does not go on. */
  private async reportDeletion(app: Application, message: string, p: Pass): Promise<void> {
    await this.o.events?.record(eventTarget(app), 'Warning', 'DeletionError', message);
    await this.writeStatus(
      app,
      { ...app.status, conditions: this.conditions(app, [{ type: 'DeletionError', message }]) },
      p,
    ).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  }

  /** Adds the finalizers the application lacks (a JSON patch that fails if they changed meanwhile). */
  private async addFinalizers(app: Application, wanted: readonly string[], p: Pass): Promise<void> {
    const finalizers = app.metadata.finalizers ?? [];
    const missing = wanted.filter((f) => !finalizers.includes(f));
    if (missing.length === 0) return;
    p.signal?.throwIfAborted();
    const written = await this.o.client.request<Application & KubeObject>(
      'PATCH',
      resourcePath(APPLICATION, app.metadata.namespace, app.metadata.name),
      {
        body: app.metadata.finalizers
          ? [
              { op: 'test', path: '/metadata/finalizers', value: finalizers },
              { op: 'replace', path: '/metadata/finalizers', value: [...finalizers, ...missing] },
            ]
          : [{ op: 'add', path: '/metadata/finalizers', value: missing }],
        contentType: PatchType.json,
      },
    );
    app.metadata.finalizers = written.metadata.finalizers;
    this.o.onWrite?.(written);
  }

  /** Removes finalizers; the next step of a deletion then goes on in the same pass. */
  private async removeFinalizers(app: Application, names: readonly string[], p: Pass): Promise<void> {
    const finalizers = app.metadata.finalizers ?? [];
    const keep = finalizers.filter((f) => !names.includes(f));
    p.signal?.throwIfAborted();
    app.metadata.finalizers = keep;
    await this.o.client
      .request('PATCH', resourcePath(APPLICATION, app.metadata.namespace, app.metadata.name), {
        body: [
          { op: 'test', path: '/metadata/finalizers', value: finalizers },
          { op: 'replace', path: '/metadata/finalizers', value: keep },
        ],
        contentType: PatchType.json,
      })
      .catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
  }
}

/** A comparison that cannot proceed; `degrades` marks the application's own fault (a bad render). */
export class ComparisonFailure extends Error {
  readonly degrades: boolean;
  constructor(message: string, degrades: boolean) {
    super(message);
    this.degrades = degrades;
  }
}

function isRenderFailure(err: unknown): boolean {
  const name = (err as { name?: string }).name ?? '';
  return (
    [
      'RenderError',
      'ManifestError',
      'ImageOverrideError',
      'PathEscapeError',
      'YAMLParseError',
      'YAMLWarning',
    ].includes(name) || err instanceof SyntaxError
  );
}

/** Objects from a LIST lack apiVersion and kind; an event must name them. */
function eventTarget(app: Application) {
  return { apiVersion: APPLICATION.apiVersion, kind: 'Application', metadata: app.metadata };
}

/** Repository URLs the controller reads: remote ones only, and without credentials in them. */
export function checkRepoURL(repoURL: string, field = 'spec.source.repoURL'): string | undefined {
  if (repoURL.startsWith('-')) return `${field} "${repoURL}" is not a repository URL`;
  const scp = /^[\w.-]+@[\w.-]+:[^/]/.test(repoURL);
  let url: URL | undefined;
  try {
    url = new URL(repoURL);
  } catch {
    url = undefined;
  }
  if (!scp && (!url || !['https:', 'http:', 'ssh:', 'git:'].includes(url.protocol))) {
    // Local paths and file:// would let an Application read the controller's own disk.
    return `${field} must be an https, http, ssh or git URL, got "${repoURL.replace(/\/\/[^@/]*@/, '//***@')}"`;
  }
  if (url && (url.username || url.password) && url.protocol !== 'ssh:') {
    return `${field} must not contain credentials: put them in a repository Secret`;
  }
  return undefined;
}

/** `at`: how messages name the source (`source`, or `sources[1]`). */
function unsupportedSourceFields(app: Application, src: ApplicationSource, at: string): string[] {
  const out: string[] = [];
  if (src.plugin) out.push(`${at}.plugin (config management plugins)`);
  const k = (src.kustomize ?? {}) as Record<string, unknown>;
  for (const f of ['namePrefix', 'nameSuffix', 'namespace', 'commonLabels', 'commonAnnotations']) {
    if (k[f] !== undefined) out.push(`${at}.kustomize.${f}: set it in the kustomization`);
  }
  if (src.directory?.include || src.directory?.exclude) out.push(`${at}.directory.include/exclude`);
  const h = (src.helm ?? {}) as Record<string, unknown>;
  if (h.skipCrds) out.push(`${at}.helm.skipCrds`);
  if (src.helm?.parameters?.some((p) => p.forceString)) out.push(`${at}.helm.parameters[].forceString`);
  if ((app.spec.syncPolicy as Record<string, unknown> | undefined)?.managedNamespaceMetadata) {
    out.push('syncPolicy.managedNamespaceMetadata');
  }
  return out;
}

/**
 * A Service a Rollout manages (Argo Rollouts' annotation) carries the rollout's pod-template-hash
 * in its selector. The selector is an atomic map, so applying the Git version would drop it and
 * fight the rollout controller: the live hash is carried into the desired object instead.
 */
export function keepRolloutSelector(desired: KubeResource, live: KubeResource | undefined): KubeResource {
  if (
    desired.kind !== 'Service' ||
    !live?.metadata.annotations?.['argo-rollouts.argoproj.io/managed-by-rollouts']
  )
    return desired;
  const hash = (live.spec as { selector?: Record<string, string> } | undefined)?.selector?.[
    'rollouts-pod-template-hash'
  ];
  const spec = desired.spec as { selector?: Record<string, string> } | undefined;
  if (!hash || !spec?.selector) return desired;
  return {
    ...desired,
    spec: { ...spec, selector: { ...spec.selector, 'rollouts-pod-template-hash': hash } },
  };
}

/** The operation in progress, if any: phase Running and not finished (a retry wait is not one). */
function runningOperation(app: Application): OperationState | undefined {
  const state = app.status?.operationState;
  return state?.phase === 'Running' && !state.finishedAt ? state : undefined;
}

function isSynced(comparison: Comparison): boolean {
  return (
    comparison.objects.every((c) => c.inSync) &&
    comparison.extraneous.length === 0 &&
    comparison.errors.length === 0
  );
}

/** Whether the application is in sync once `results` (a selective sync's) are applied and pruned. */
function isSyncedAfter(comparison: Comparison, results: readonly ResourceResult[]): boolean {
  const applied = appliedKeys(results);
  const pruned = prunedKeys(results);
  return (
    comparison.objects.every((c) => c.inSync || applied.has(c.resolved.key)) &&
    comparison.extraneous.every((e) => pruned.has(e.resolved.key)) &&
    comparison.errors.length === 0
  );
}

function summarize(comparison: Comparison): ComparisonSummary {
  return {
    revision: comparison.revision,
    outOfSync: comparison.objects.filter((c) => !c.inSync).length,
    requiresPruning: comparison.extraneous.length,
    errors: comparison.errors.length,
    empty: comparison.desired.length === 0 && comparison.hooks.length === 0,
  };
}

function warningConditions(comparison: Comparison): Omit<AppCondition, 'lastTransitionTime'>[] {
  const conditions = comparison.warnings.map((message) => ({ type: 'SyncWarning', message }));
  if (comparison.shared.length)
    conditions.push({ type: 'SharedResourceWarning', message: comparison.shared.join('; ') });
  if (comparison.repeated.length)
    conditions.push({
      type: 'RepeatedResourceWarning',
      message: `rendered by more than one source, the last one's is used: ${comparison.repeated.join('; ')}`,
    });
  return conditions;
}

function comparisonConditions(comparison: Comparison): Omit<AppCondition, 'lastTransitionTime'>[] {
  const conditions = warningConditions(comparison);
  if (comparison.errors.length) {
    conditions.push({ type: 'ComparisonError', message: comparison.errors.join('\n') });
  }
  return conditions;
}

/** An operation that ends before it starts: what it would do is already known. */
function refusal(
  operation: SyncOperation,
  comparison: Comparison,
  syncOptions: readonly string[],
): Pick<OperationState, 'phase' | 'message'> | undefined {
  const requested = operation.sync;
  if (comparison.shared.length && syncOptions.includes('FailOnSharedResource=true')) {
    // https://argo-cd.readthedocs.io/en/stable/user-guide/sync-options/#fail-the-sync-if-a-shared-resource-is-found
    return {
      phase: 'Failed',
      message: `shared resources found and FailOnSharedResource=true, nothing was applied: ${comparison.shared.join('; ')}`,
    };
  }
  if (requested?.dryRun) {
    // A dry run: what the comparison found, nothing applied or pruned, no history entry.
    const outOfSync = comparison.objects.filter((c) => !c.inSync).length;
    const refused = comparison.errors.length ? `; ${comparison.errors.length} refused by the server` : '';
    return {
      phase: 'Succeeded',
      message: `dry run: ${outOfSync} object(s) would be applied, ${comparison.extraneous.length} pruned${refused}`,
    };
  }
  if (comparison.errors.length) {
    // The server-side dry-run refused objects: nothing is applied.
    return {
      phase: 'Failed',
      message: `one or more objects failed to apply (dry run), nothing was applied:\n${comparison.errors.join('\n')}`,
    };
  }
  return undefined;
}

/** The operation state with a step's progress; the wave reached matters only while it runs. */
function withProgress(
  state: OperationState,
  progress: Progress & { message: string },
  phase: OperationState['phase'],
): OperationState {
  const { currentWave: _previous, ...rest } = state;
  return {
    ...rest,
    phase,
    message: progress.message,
    syncResult: { ...state.syncResult!, resources: progress.results },
    ...(phase === 'Running' && progress.currentWave ? { currentWave: progress.currentWave } : {}),
  };
}

export { TransientError };

/** status.sync's `revisions` with multiple sources (Argo CD's), beside the composite `revision`. */
function revisionsOf(app: Application, revision: string): { revisions?: string[] } {
  const { revisions } = sourceFields(app, revision);
  return revisions ? { revisions } : {};
}

/** `source`, or `sources` with multiple sources, as comparedTo records them. */
function sourcesField(app: Application): { source?: ApplicationSource; sources?: ApplicationSource[] } {
  const { revisions: _, ...fields } = sourceFields(app);
  return fields;
}

function sourceTypeFields(comparison: Comparison): Pick<ApplicationStatus, 'sourceType' | 'sourceTypes'> {
  return comparison.sourceTypes
    ? { sourceType: comparison.sourceType, sourceTypes: comparison.sourceTypes }
    : { sourceType: comparison.sourceType };
}

/** One source's fields that can be checked without reading it; `at` names it in messages. */
function validateSource(source: ApplicationSource, at: string): string | undefined {
  if (!source.repoURL) return `${at}.repoURL is required`;
  const oci = source.chart ? ociRepository(source.repoURL) : undefined;
  if (source.chart && !oci && !/^https?:\/\//.test(source.repoURL)) {
    return `${at}.chart: the repoURL must be an HTTP(S) Helm repository or an OCI registry (oci://host/path), not ${JSON.stringify(
      source.repoURL.replace(/\/\/[^@/]*@/, '//***@'),
    )}`;
  }
  return oci ? undefined : checkRepoURL(source.repoURL, `${at}.repoURL`);
}

/**
 * Multiple sources' refs: unique names of Git sources, and every `$ref/path` values file naming
 * one of them (Argo CD's rules), so a typo fails here and not as a missing file at render time.
 */
function validateRefs(sources: readonly ApplicationSource[]): string | undefined {
  const refs = new Set<string>();
  for (const [i, s] of sources.entries()) {
    if (s.ref === undefined) continue;
    if (!/^[A-Za-z0-9_-]+$/.test(s.ref))
      return `spec.sources[${i}].ref ${JSON.stringify(s.ref)}: letters, digits, - and _ only`;
    if (s.chart) return `spec.sources[${i}].ref: a ref source must be a Git repository, not chart ${s.chart}`;
    if (refs.has(s.ref)) return `spec.sources[${i}].ref "${s.ref}" is used by another source too`;
    refs.add(s.ref);
  }
  for (const [i, s] of sources.entries()) {
    for (const f of s.helm?.valueFiles ?? []) {
      const file = refValueFile(f);
      if (file === 'malformed')
        return `spec.sources[${i}].helm.valueFiles: ${JSON.stringify(f)} is not $ref/path`;
      if (file && !refs.has(file.ref))
        return `spec.sources[${i}].helm.valueFiles: ${f} names no source with ref: ${file.ref}`;
    }
  }
  return undefined;
}

/**
 * The sources' objects together, in their order. An object more than one source renders is
 * taken from the last of them, where the first one stood (Argo CD's precedence).
 */
export function combineSources(
  rendered: readonly { objects: KubeResource[] }[],
  destination: string,
): { objects: KubeResource[]; repeated: string[] } {
  if (rendered.length === 1) return { objects: rendered[0]!.objects, repeated: [] };
  const byKey = new Map<string, number>();
  const objects: KubeResource[] = [];
  const repeated = new Set<string>();
  for (const r of rendered) {
    for (const o of r.objects) {
      // generateName objects (hooks) are distinct by construction.
      if (!o.metadata.name) {
        objects.push(o);
        continue;
      }
      const key = `${apiGroup(o.apiVersion)}/${o.kind}/${o.metadata.namespace || destination}/${o.metadata.name}`;
      const at = byKey.get(key);
      if (at === undefined) {
        byKey.set(key, objects.push(o) - 1);
      } else {
        objects[at] = o;
        repeated.add(describeObject(o, o.metadata.namespace || destination));
      }
    }
  }
  return { objects, repeated: [...repeated] };
}
