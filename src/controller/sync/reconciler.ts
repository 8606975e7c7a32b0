// The Application reconciler: resolve the revision, render, compare with the cluster, sync when
// the policy (or a requested operation) says so, and report sync and health status. All state is
// in the Application's status, so a restarted controller carries on where the last one stopped.
//
// Safety rules, each enforced here: a failed render or comparison never applies or prunes
// anything; an empty render never prunes unless allowEmpty; only objects carrying this
// application's tracking id are pruned; a sync that fails part-way reports what it applied.
import { parseDurationMs } from '../../core/duration.ts';
import { stableJSON } from '../../core/json.ts';
import { ApplyError, type ResolvedObject, type ResourceManager } from '../../core/kube/apply.ts';
import { UnknownKindError, type ResourceMapping, type RESTMapper } from '../../core/kube/discovery.ts';
import { assessHealth, worstHealth, type HealthStatus } from '../../core/kube/health.ts';
import type { KubeResource } from '../../core/kube/resource.ts';
import { apiGroup, describeObject } from '../../core/kube/resource.ts';
import { isHook, isSkipped, planSync, SyncPlanError, type SyncPlan } from '../../core/kube/sync-plan.ts';
import { SourceError, type RepoCache } from '../../core/gitops/repo-cache.ts';
import type { KubeClient } from '../../core/kube/client.ts';
import { isNotFound, PatchType } from '../../core/kube/client.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Logger } from '../runtime/log.ts';
import type { KubeObject, Request } from '../../core/kube/objects.ts';
import { resourcePath } from '../../core/kube/objects.ts';
import { Comparer, type ObjectComparison } from './compare.ts';
import type { LiveObjects } from './live.ts';
import { runSyncPlan, type OperationOutcome } from './operation.ts';
import { isTrackedBy, track, type ManifestSource } from './source.ts';
import {
  APPLICATION,
  REFRESH_ANNOTATION,
  RESOURCES_FINALIZERS,
  type AppCondition,
  type Application,
  type ApplicationStatus,
  type HistoryEntry,
  type OperationState,
  type ResourceStatus,
  type SyncOperation,
} from './types.ts';

export interface ApplicationReconcilerOptions {
  client: KubeClient;
  resources: ResourceManager;
  mapper: RESTMapper;
  repos: RepoCache;
  source: ManifestSource;
  live: LiveObjects;
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
  /** How soon to look again while something is progressing. */
  progressingRequeueMs?: number;
  waveTimeoutMs?: number;
  now?: () => Date;
}

export interface ReconcileResult {
  requeueAfter?: number;
}

const IN_CLUSTER = new Set(['https://kubernetes.default.svc', 'https://kubernetes.default.svc/', '']);
const HISTORY_LIMIT = 10;

/** Thrown (and so retried with backoff) when the cluster or the network failed, not the app. */
class TransientError extends Error {}

export interface Comparison {
  revision: string;
  sourceType: string;
  desired: ResolvedObject[];
  hooks: ResolvedObject[];
  objects: ObjectComparison[];
  /** Tracked live objects no longer desired. */
  extraneous: { resolved: ResolvedObject; live: KubeResource }[];
  errors: string[];
  warnings: string[];
}

export class ApplicationReconciler {
  private readonly o: ApplicationReconcilerOptions;
  readonly comparer: Comparer;
  /** Self-heal attempts per application while its live state keeps drifting (for backoff). */
  private readonly selfHealAttempts = new Map<string, { count: number; last: number }>();
  /** The current reconcile's abort signal (reconciles of one key never overlap). */
  private signal: AbortSignal | undefined;

  constructor(options: ApplicationReconcilerOptions) {
    this.o = options;
    this.comparer = new Comparer(options.resources, options.onDryRuns);
  }

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  /** `signal` aborts when this replica stops leading: no write may follow. */
  async reconcile(req: Request, signal?: AbortSignal): Promise<ReconcileResult> {
    const app = await this.o.getApplication(req);
    if (!app) {
      this.selfHealAttempts.delete(`${req.namespace}/${req.name}`);
      return {};
    }
    this.signal = signal;
    if (app.metadata.deletionTimestamp) return this.finalize(app);
    const log = this.o.logger.child({ application: `${req.namespace}/${req.name}` });
    const poll = this.o.pollIntervalMs ?? 180_000;

    const invalid = this.validate(app);
    if (invalid) {
      const failed: Partial<ApplicationStatus> = {
        sync: { status: 'Unknown' },
        health: { status: 'Unknown', message: invalid },
        conditions: this.conditions(app, [{ type: 'InvalidSpecError', message: invalid }]),
      };
      await this.reportFailure(app, invalid, failed);
      return {};
    }
    const refreshRequested = app.metadata.annotations?.[REFRESH_ANNOTATION] !== undefined;
    if (refreshRequested) await this.clearRefresh(app);
    // A requested sync means "now": ask git for the branch's head rather than the cached answer.
    const refresh = refreshRequested || app.operation !== undefined;

    let comparison: Comparison;
    try {
      comparison = await this.compare(app, refresh);
    } catch (err) {
      if (!(err instanceof ComparisonFailure)) throw err;
      // Nothing is applied or pruned: the previous inventory and sync stay as they are.
      log.warn('comparison failed', { error: err.message });
      await this.o.events?.record(eventTarget(app), 'Warning', 'ComparisonError', err.message);
      const failed: Partial<ApplicationStatus> = {
        sync: { ...app.status?.sync, status: 'Unknown' },
        health: err.degrades
          ? { status: 'Degraded', message: err.message }
          : (app.status?.health ?? { status: 'Unknown' }),
        conditions: this.conditions(app, [{ type: 'ComparisonError', message: err.message }]),
      };
      await this.reportFailure(app, err.message, failed);
      return { requeueAfter: err.degrades ? poll : Math.min(poll, 30_000) };
    }

    const outOfSync = comparison.objects.filter((c) => !c.inSync);
    const synced =
      outOfSync.length === 0 && comparison.extraneous.length === 0 && comparison.errors.length === 0;
    // Self-heal backs off while drift keeps coming back; it starts over once the app is in sync.
    if (synced) this.selfHealAttempts.delete(key(app));
    const decision = this.shouldSync(app, comparison, synced);
    let operationOutcome: OperationOutcome | undefined;
    const conditions: Omit<AppCondition, 'lastTransitionTime'>[] = comparison.warnings.map((message) => ({
      type: 'SyncWarning',
      message,
    }));
    if (comparison.errors.length) {
      conditions.push({ type: 'ComparisonError', message: comparison.errors.join('\n') });
    }
    if (decision.skipReason) conditions.push({ type: 'SyncError', message: decision.skipReason });

    if (decision.sync) {
      const startedAt = this.now();
      const requested = decision.operation.sync;
      if (requested?.resources?.length) {
        operationOutcome = {
          phase: 'Failed',
          message:
            'selective sync (operation.sync.resources) is not supported yet: sync the whole application',
          results: [],
          applied: [],
          pruned: [],
        };
      } else if (requested?.dryRun) {
        // A dry run: what the comparison found, nothing applied or pruned, no history entry.
        operationOutcome = {
          phase: 'Succeeded',
          message: `dry run: ${outOfSync.length} object(s) would be applied, ${comparison.extraneous.length} pruned${comparison.errors.length ? `; ${comparison.errors.length} refused by the server` : ''}`,
          results: [],
          applied: [],
          pruned: [],
          dryRun: true,
        };
      } else if (comparison.errors.length) {
        // The server-side dry-run refused objects: nothing is applied.
        operationOutcome = {
          phase: 'Failed',
          message: `one or more objects failed to apply (dry run), nothing was applied:\n${comparison.errors.join('\n')}`,
          results: [],
          applied: [],
          pruned: [],
        };
      } else {
        const who = decision.operation.initiatedBy?.username
          ? `by ${decision.operation.initiatedBy.username}`
          : 'automatically';
        await this.o.events?.record(
          eventTarget(app),
          'Normal',
          'OperationStarted',
          `sync to ${comparison.revision.slice(0, 12)} started ${who}`,
        );
        log.info('syncing', {
          revision: comparison.revision,
          outOfSync: outOfSync.length,
          prune: comparison.extraneous.length,
        });
        operationOutcome = await this.sync(app, comparison, decision.operation, startedAt);
        this.signal?.throwIfAborted();
      }
      const warnings = conditions.filter((c) => c.type === 'SyncWarning');
      await this.finishOperation(app, operationOutcome, comparison, decision.operation, startedAt, warnings);
      await this.o.events?.record(
        eventTarget(app),
        operationOutcome.phase === 'Succeeded' ? 'Normal' : 'Warning',
        operationOutcome.phase === 'Succeeded' ? 'OperationCompleted' : 'SyncFailed',
        `sync to ${comparison.revision.slice(0, 12)} ${operationOutcome.phase.toLowerCase()}: ${operationOutcome.message}`,
      );
      // Look again soon: the objects just applied are progressing, and the status should show it.
      return { requeueAfter: this.o.progressingRequeueMs ?? 2000 };
    }

    const health = this.health(comparison);
    await this.writeStatus(app, {
      ...app.status,
      sync: {
        status: synced ? 'Synced' : 'OutOfSync',
        revision: comparison.revision,
        comparedTo: { source: app.spec.source!, destination: app.spec.destination },
      },
      health: { status: health.status, ...(health.message ? { message: health.message } : {}) },
      resources: this.resourceStatuses(comparison),
      conditions: this.conditions(app, conditions),
      sourceType: comparison.sourceType,
      observedGeneration: app.metadata.generation,
    });
    if (health.status === 'Progressing' || health.status === 'Missing')
      return { requeueAfter: this.o.progressingRequeueMs ?? 2000 };
    if (decision.retryAfterMs !== undefined) return { requeueAfter: Math.min(decision.retryAfterMs, poll) };
    return { requeueAfter: poll };
  }

  /** Writes a failure's status; a pending operation fails with it (and is cleared). */
  private async reportFailure(
    app: Application,
    message: string,
    failed: Partial<ApplicationStatus>,
  ): Promise<void> {
    if (!app.operation) return this.writeStatus(app, { ...app.status, ...failed });
    const outcome: OperationOutcome = { phase: 'Failed', message, results: [], applied: [], pruned: [] };
    await this.finishOperation(app, outcome, undefined, app.operation, this.now(), [], failed);
  }

  // ---- validation -------------------------------------------------------------------------

  private validate(app: Application): string | undefined {
    if (app.spec.sources?.length) return 'spec.sources (multiple sources) is not supported: use spec.source';
    if (!app.spec.source?.repoURL) return 'spec.source.repoURL is required';
    const repoProblem = checkRepoURL(app.spec.source.repoURL);
    if (repoProblem) return repoProblem;
    // Settings that change what is rendered are refused rather than ignored: ignoring them would
    // apply something other than what the user described.
    const unsupported = unsupportedSourceFields(app);
    if (unsupported.length) return `not supported: ${unsupported.join('; ')}`;
    const dest = app.spec.destination ?? {};
    if (dest.name && dest.name !== 'in-cluster') {
      return `destination name "${dest.name}": only the cluster the controller runs in ("in-cluster") is supported`;
    }
    if (dest.server && !IN_CLUSTER.has(dest.server)) {
      return `destination server "${dest.server}": only the cluster the controller runs in (https://kubernetes.default.svc) is supported`;
    }
    return undefined;
  }

  // ---- comparison ---------------------------------------------------------------------------

  /** What a sync would change, without changing anything (for `kube-actions app diff`). */
  async diff(app: Application): Promise<Comparison> {
    const invalid = this.validate(app);
    if (invalid) throw new ComparisonFailure(invalid, true);
    return this.compare(app, true);
  }

  private async compare(app: Application, refresh: boolean): Promise<Comparison> {
    const source = app.spec.source!;
    const wanted = app.operation?.sync?.revision || source.targetRevision || 'HEAD';
    let revision: string;
    try {
      revision = await this.o.repos.resolve(source.repoURL, wanted, refresh, this.signal);
    } catch (err) {
      if (err instanceof SourceError) throw new ComparisonFailure(err.message, false);
      throw err;
    }
    let desiredState;
    try {
      desiredState = await this.o.source.desired(app, revision, this.signal);
    } catch (err) {
      if (err instanceof SourceError) throw new ComparisonFailure(err.message, false);
      if (isRenderFailure(err))
        throw new ComparisonFailure(
          `rendering ${source.path || '.'} at ${revision.slice(0, 12)} failed: ${(err as Error).message}`,
          true,
        );
      throw err;
    }
    const destination = app.spec.destination.namespace ?? '';
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
      resolved = await this.o.resources.resolve(objects, destination, pendingKinds);
    } catch (err) {
      if (err instanceof ApplyError) throw new ComparisonFailure(err.message, true);
      throw err;
    }
    const tracked = resolved.map((r) => ({ ...r, object: track(app, r.object, r.namespace) }));
    const hooks = tracked.filter((r) => isHook(r.object));
    const desired = tracked.filter((r) => !isHook(r.object));

    const live = await Promise.all(desired.map((r) => this.liveOf(r)));
    // Fields a Rollout controller owns on the Services it manages stay as they are.
    desired.forEach((r, i) => {
      const kept = keepRolloutSelector(r.object, live[i]);
      if (kept !== r.object) desired[i] = { ...r, object: kept };
    });
    const namespacesCreated = new Set(
      desired.filter((r) => r.object.kind === 'Namespace').map((r) => r.object.metadata.name),
    );
    if (app.spec.syncPolicy?.syncOptions?.includes('CreateNamespace=true') && destination)
      namespacesCreated.add(destination);
    const objectsCompared = await this.comparer.compare(
      desired.map((r, i) => ({ resolved: r, live: live[i] })),
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
      const mapping = await this.mappingOrGone(apiVersion, entry.kind);
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
      const liveObj = await this.liveOf(r);
      if (liveObj && isTrackedBy(app, liveObj, entry.namespace))
        extraneous.push({ resolved: r, live: liveObj });
    }
    const warnings = desiredState.unsupported.map((u) => `not supported, ignored: ${u}`);
    if ((app.spec as { ignoreDifferences?: unknown[] }).ignoreDifferences?.length) {
      warnings.push(
        'not supported yet, ignored: spec.ignoreDifferences (those fields are compared and synced like any other)',
      );
    }
    return {
      revision,
      sourceType: desiredState.sourceType,
      desired,
      hooks,
      objects: objectsCompared,
      extraneous,
      errors,
      warnings,
    };
  }

  /** The resource of a kind, or undefined when the server no longer serves it (not on errors). */
  private async mappingOrGone(apiVersion: string, kind: string): Promise<ResourceMapping | undefined> {
    try {
      return await this.o.mapper.mapping(apiVersion, kind);
    } catch (err) {
      if (err instanceof UnknownKindError) return undefined;
      throw err;
    }
  }

  private async liveOf(r: ResolvedObject): Promise<KubeResource | undefined> {
    if (!r.mapping.resource) return undefined;
    try {
      return await this.o.live.get(r.mapping, r.namespace, r.object.metadata.name ?? '');
    } catch (err) {
      throw new TransientError(
        `reading live ${describeObject(r.object, r.namespace)}: ${(err as Error).message}`,
      );
    }
  }

  // ---- deciding and syncing ------------------------------------------------------------------

  private shouldSync(
    app: Application,
    comparison: Comparison,
    synced: boolean,
  ): { sync: boolean; operation: SyncOperation; skipReason?: string; retryAfterMs?: number } {
    if (app.operation) return { sync: true, operation: app.operation };
    const automated = app.spec.syncPolicy?.automated;
    const operation: SyncOperation = {
      sync: { revision: comparison.revision, prune: automated?.prune ?? false },
      initiatedBy: { automated: true },
    };
    if (!automated || automated.enabled === false || synced) return { sync: false, operation };
    const needsApply = comparison.objects.some((c) => !c.inSync) || comparison.errors.length > 0;
    if (!needsApply && !automated.prune) {
      // Only pruning would change anything, and pruning is off (Argo CD skips such syncs too).
      return { sync: false, operation };
    }
    if (comparison.desired.length === 0 && comparison.hooks.length === 0 && !automated.allowEmpty) {
      return {
        sync: false,
        operation,
        skipReason:
          'the source rendered no objects: automated sync refuses to sync an empty application (set allowEmpty to allow it)',
      };
    }
    const last = app.status?.operationState;
    // "Already attempted" means this revision with this source (a spec edit is a new attempt).
    const sameRevision =
      last?.syncResult?.revision === comparison.revision &&
      stableJSON(last.syncResult.source) === stableJSON(app.spec.source);
    if (sameRevision && last?.phase === 'Error') {
      // Interrupted by the cluster or the network, not refused: retry with backoff.
      const wait = backoffMs(app.spec.syncPolicy?.retry?.backoff, Math.min(last.retryCount ?? 0, 10));
      const since = this.now().getTime() - Date.parse(last.finishedAt ?? '');
      if (since < wait) return { sync: false, operation, retryAfterMs: wait - since };
      return { sync: true, operation };
    }
    if (sameRevision && last?.phase !== 'Succeeded' && last?.phase !== 'Running') {
      // A failed sync of this revision is retried only as syncPolicy.retry allows (Argo CD).
      const retry = app.spec.syncPolicy?.retry;
      const attempts = last?.retryCount ?? 0;
      if (!retry || ((retry.limit ?? 0) >= 0 && attempts >= (retry.limit ?? 0))) {
        return {
          sync: false,
          operation,
          skipReason: `the last sync of ${comparison.revision.slice(0, 12)} failed; not retrying: ${last?.message ?? ''}`,
        };
      }
      const wait = backoffMs(retry.backoff, attempts);
      const since = this.now().getTime() - Date.parse(last?.finishedAt ?? '');
      if (since < wait) return { sync: false, operation, retryAfterMs: wait - since };
      return { sync: true, operation: { ...operation, retry } };
    }
    if (sameRevision && last?.phase === 'Succeeded' && !automated.selfHeal) {
      // Drift from the synced revision is corrected only with selfHeal.
      return { sync: false, operation };
    }
    if (sameRevision && automated.selfHeal) {
      // Self-heal with backoff, so a fight with another controller does not become a hot loop.
      const attempt = this.selfHealAttempts.get(key(app)) ?? { count: 0, last: 0 };
      const wait = attempt.count === 0 ? 0 : Math.min(2 ** (attempt.count - 1) * 2000, 180_000);
      const now = this.now().getTime();
      const since = now - attempt.last;
      if (since < wait) return { sync: false, operation, retryAfterMs: wait - since };
      this.selfHealAttempts.set(key(app), { count: attempt.count + 1, last: now });
    }
    return { sync: true, operation };
  }

  private async sync(
    app: Application,
    comparison: Comparison,
    operation: SyncOperation,
    startedAt: Date,
  ): Promise<OperationOutcome> {
    const syncOptions = [...(app.spec.syncPolicy?.syncOptions ?? []), ...(operation.sync?.syncOptions ?? [])];
    const byKey = new Map<string, ResolvedObject>();
    const namespaced = new Map<string, boolean>();
    for (const r of [
      ...comparison.desired,
      ...comparison.hooks,
      ...comparison.extraneous.map((e) => e.resolved),
    ]) {
      byKey.set(r.key, r);
      namespaced.set(`${apiGroup(r.object.apiVersion)}/${r.object.kind}`, r.mapping.namespaced);
    }
    const liveByKey = new Map(comparison.objects.filter((c) => c.live).map((c) => [c.resolved.key, c.live!]));
    const hookLive = await Promise.all(
      comparison.hooks.filter((h) => h.object.metadata.name).map((h) => this.liveOf(h)),
    );
    let plan: SyncPlan;
    try {
      plan = planSync({
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
          startedAt,
          isNamespaced: (group, kind) => namespaced.get(`${group}/${kind}`),
          isOutOfSync: (desired) => {
            const c = comparison.objects.find((o) => o.resolved.object === desired);
            return c ? !c.inSync : true;
          },
        },
      });
    } catch (err) {
      if (!(err instanceof SyncPlanError)) throw err;
      return { phase: 'Failed', message: err.message, results: [], applied: [], pruned: [] };
    }
    const destination = app.spec.destination.namespace ?? '';
    // The CreateNamespace=true task is not among the rendered objects: resolve it here.
    for (const task of plan.phases.flatMap((p) => p.waves.flatMap((w) => w.tasks))) {
      if (task.type === 'apply' && !byKey.has(task.key)) {
        const [r] = await this.o.resources.resolve([task.object], destination);
        byKey.set(task.key, r!);
      }
    }
    try {
      return await runSyncPlan(plan, {
        resources: this.o.resources,
        mapper: this.o.mapper,
        resolved: byKey,
        owns: (live) => isTrackedBy(app, live, live.metadata.namespace ?? ''),
        resolveHook: async (obj) => {
          const [r] = await this.o.resources.resolve([obj], destination);
          return { ...r!, object: track(app, r!.object, r!.namespace) };
        },
        waveTimeoutMs: this.o.waveTimeoutMs ?? 300_000,
        ...(this.signal ? { signal: this.signal } : {}),
      });
    } catch (err) {
      // Only a stop (lost leadership) gets here: runSyncPlan reports every other failure itself.
      if (this.signal?.aborted) throw err;
      return {
        phase: 'Error',
        message: `sync interrupted: ${(err as Error).message}`,
        results: [],
        applied: [],
        pruned: [],
      };
    }
  }

  private async finishOperation(
    app: Application,
    outcome: OperationOutcome,
    comparison: Comparison | undefined,
    operation: SyncOperation = app.operation ?? {},
    startedAt: Date = this.now(),
    warnings: Omit<AppCondition, 'lastTransitionTime'>[] = [],
    /** Status fields that win over what the outcome implies (a comparison failure's). */
    override: Partial<ApplicationStatus> = {},
  ): Promise<void> {
    const finishedAt = this.now().toISOString();
    const previous = app.status?.operationState;
    const revision = comparison?.revision ?? previous?.syncResult?.revision ?? '';
    const retryCount =
      outcome.phase === 'Succeeded'
        ? 0
        : previous?.syncResult?.revision === revision && previous.phase !== 'Succeeded'
          ? (previous.retryCount ?? 0) + 1
          : 0;
    const operationState: OperationState = {
      operation,
      phase: outcome.phase,
      message: outcome.message,
      syncResult: { revision, resources: outcome.results, source: app.spec.source! },
      startedAt: startedAt.toISOString(),
      finishedAt,
      ...(retryCount ? { retryCount } : {}),
    };
    const history = [...(app.status?.history ?? [])];
    if (outcome.phase === 'Succeeded' && comparison && !outcome.dryRun) {
      const id = (history.at(-1)?.id ?? -1) + 1;
      const entry: HistoryEntry = {
        id,
        revision,
        source: app.spec.source!,
        deployedAt: finishedAt,
        deployStartedAt: startedAt.toISOString(),
        ...(operation.initiatedBy ? { initiatedBy: operation.initiatedBy } : {}),
      };
      history.push(entry);
    }
    const limit = app.spec.revisionHistoryLimit ?? HISTORY_LIMIT;
    // The inventory: what is desired now plus anything a failed run applied, minus what was pruned.
    const real = comparison && !outcome.dryRun ? comparison : undefined;
    const inventory = real ? this.inventory(real, outcome) : app.status?.resources;
    const health = real ? this.health(real, outcome) : app.status?.health;
    const synced = outcome.phase === 'Succeeded' && !outcome.dryRun;
    await this.writeStatus(app, {
      ...app.status,
      operationState,
      history: limit > 0 ? history.slice(-limit) : [],
      ...(inventory ? { resources: inventory } : {}),
      sync: outcome.dryRun
        ? (app.status?.sync ?? { status: 'Unknown' })
        : {
            status: synced ? 'Synced' : 'OutOfSync',
            revision,
            comparedTo: { source: app.spec.source!, destination: app.spec.destination },
          },
      ...(health ? { health } : {}),
      ...(comparison ? { sourceType: comparison.sourceType } : {}),
      observedGeneration: app.metadata.generation,
      conditions: this.conditions(app, [
        ...warnings,
        ...(outcome.phase === 'Succeeded' ? [] : [{ type: 'SyncError', message: outcome.message }]),
      ]),
      ...override,
    });
    if (app.operation) {
      // The requested operation is done: clear it, as Argo CD does; but only if it is still the one
      // we ran (the test fails when someone asked for another meanwhile, which then runs next).
      try {
        const written = await this.o.client.request<Application>(
          'PATCH',
          resourcePath(APPLICATION, app.metadata.namespace, app.metadata.name),
          {
            body: [
              { op: 'test', path: '/operation', value: app.operation },
              { op: 'remove', path: '/operation' },
            ],
            contentType: PatchType.json,
          },
        );
        this.o.onWrite?.(written);
      } catch (err) {
        const code = (err as { code?: number }).code;
        if (code !== 422 && code !== 409 && !isNotFound(err)) throw err;
      }
    }
  }

  private inventory(comparison: Comparison, outcome?: OperationOutcome): ResourceStatus[] {
    const pruned = new Set(outcome?.pruned ?? []);
    const inSync = new Map(comparison.objects.map((c) => [c.resolved.key, c.inSync]));
    const applied = new Set(outcome?.applied.map((r) => r.key) ?? []);
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
    const succeeded = outcome?.phase === 'Succeeded';
    for (const r of comparison.desired) {
      add(r, succeeded || applied.has(r.key) || inSync.get(r.key) ? 'Synced' : 'OutOfSync');
    }
    for (const e of comparison.extraneous) {
      if (!pruned.has(e.resolved.key)) add(e.resolved, 'OutOfSync', { requiresPruning: true });
    }
    return [...entries.values()];
  }

  private health(comparison: Comparison, outcome?: OperationOutcome): HealthStatus {
    const statuses: HealthStatus[] = [];
    for (const c of comparison.objects) {
      const applied = outcome?.applied.some((r) => r.key === c.resolved.key);
      // Just applied: it is at best progressing until the watch shows its new state.
      if (applied && !c.inSync) {
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
    if (outcome?.phase === 'Failed') statuses.push({ status: 'Degraded', message: outcome.message });
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

  /** Writes status through the status subresource, and only when it changed (idle resyncs write nothing). */
  private async writeStatus(app: Application, status: ApplicationStatus): Promise<void> {
    const next = { ...status };
    delete next.reconciledAt;
    const prev = { ...app.status };
    delete prev.reconciledAt;
    if (stableJSON(next) === stableJSON(prev)) return;
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
  }

  private async clearRefresh(app: Application): Promise<void> {
    const written = await this.o.client.patch<Application & KubeObject>(
      APPLICATION,
      app.metadata.namespace,
      app.metadata.name,
      { metadata: { annotations: { [REFRESH_ANNOTATION]: null } } },
      PatchType.merge,
    );
    this.o.onWrite?.(written);
  }

  /** Deleting an Application with the resources finalizer deletes what it manages first (Argo CD's cascade). */
  private async finalize(app: Application): Promise<ReconcileResult> {
    const finalizers = app.metadata.finalizers ?? [];
    const ours = finalizers.filter((f) => RESOURCES_FINALIZERS.includes(f));
    if (ours.length === 0) return {};
    let remaining = 0;
    for (const entry of app.status?.resources ?? []) {
      const apiVersion = entry.group ? `${entry.group}/${entry.version}` : entry.version;
      const mapping = await this.mappingOrGone(apiVersion, entry.kind);
      if (!mapping) continue;
      const live = await this.o.resources.get(mapping, entry.namespace, entry.name);
      if (!live || !isTrackedBy(app, live, entry.namespace)) continue;
      // Delete=false: the object outlives its application (Argo CD's sync option), e.g. a PVC.
      if (
        /(^|,)\s*Delete=false\s*(,|$)/.test(
          live.metadata.annotations?.['argocd.argoproj.io/sync-options'] ?? '',
        )
      )
        continue;
      remaining++;
      if (!live.metadata.deletionTimestamp) {
        await this.o.resources.delete(mapping, entry.namespace, entry.name, {
          ...(live.metadata.uid ? { uid: live.metadata.uid } : {}),
        });
      }
    }
    if (remaining > 0) return { requeueAfter: 1000 };
    const keep = finalizers.filter((f) => !RESOURCES_FINALIZERS.includes(f));
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
    return {};
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
export function checkRepoURL(repoURL: string): string | undefined {
  if (repoURL.startsWith('-')) return `spec.source.repoURL "${repoURL}" is not a repository URL`;
  const scp = /^[\w.-]+@[\w.-]+:[^/]/.test(repoURL);
  let url: URL | undefined;
  try {
    url = new URL(repoURL);
  } catch {
    url = undefined;
  }
  if (!scp && (!url || !['https:', 'http:', 'ssh:', 'git:'].includes(url.protocol))) {
    // Local paths and file:// would let an Application read the controller's own disk.
    return `spec.source.repoURL must be an https, http, ssh or git URL, got "${repoURL.replace(/\/\/[^@/]*@/, '//***@')}"`;
  }
  if (url && (url.username || url.password) && url.protocol !== 'ssh:') {
    return 'spec.source.repoURL must not contain credentials: put them in a repository Secret';
  }
  return undefined;
}

function unsupportedSourceFields(app: Application): string[] {
  const src = app.spec.source!;
  const out: string[] = [];
  if (src.chart) out.push('source.chart (Helm repository charts): point source.path at a chart in Git');
  if (src.plugin) out.push('source.plugin (config management plugins)');
  const k = (src.kustomize ?? {}) as Record<string, unknown>;
  for (const f of ['namePrefix', 'nameSuffix', 'namespace', 'commonLabels', 'commonAnnotations']) {
    if (k[f] !== undefined) out.push(`source.kustomize.${f}: set it in the kustomization`);
  }
  if (src.directory?.include || src.directory?.exclude) out.push('source.directory.include/exclude');
  const h = (src.helm ?? {}) as Record<string, unknown>;
  if (h.skipCrds) out.push('source.helm.skipCrds');
  if (src.helm?.parameters?.some((p) => p.forceString)) out.push('source.helm.parameters[].forceString');
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

function key(app: Application): string {
  return `${app.metadata.namespace}/${app.metadata.name}`;
}

/** Argo CD's retry backoff: duration × factor^attempt, capped at maxDuration (defaults 5s, 2, 3m). */
export function backoffMs(
  backoff: { duration?: string; factor?: number; maxDuration?: string } | undefined,
  attempt: number,
): number {
  const base = parseDurationMs(backoff?.duration) ?? 5000;
  const cap = parseDurationMs(backoff?.maxDuration) ?? 180_000;
  return Math.min(cap, base * (backoff?.factor ?? 2) ** attempt);
}

export { TransientError };
