// Running a sync plan as an operation that survives restarts (gitops-engine's sync context):
// phases PreSync → Sync → PostSync, each wave in order; a wave's objects are applied (server-side
// apply) or pruned and its hooks created, and the next wave starts once every hook of this one has
// finished and its objects are healthy. The first failure stops the run; SyncFail hooks then run.
//
// Nothing here waits. advanceSyncPlan does what is due now and returns, saying what it waits for;
// the caller persists the progress (status.operationState) and calls again later with it. What is
// done is read from the recorded results alone, so whichever controller calls next, after a
// restart or a failover, carries on: an object is not applied twice, and a hook's result is
// recorded, and persisted through `checkpoint`, before the hook is created, so it is created once.
// A long sync therefore holds a worker only for the moment it acts.
//
// Layout: types; advanceSyncPlan (the walk over waves); Step (one call: the tasks of a wave, what
// it waits for, how the operation ends); helpers.
import { ApplyError, type ResolvedObject, type ResourceManager } from '../../core/kube/apply.ts';
import type { RESTMapper } from '../../core/kube/discovery.ts';
import { assessHealth } from '../../core/kube/health.ts';
import type { KubeResource } from '../../core/kube/resource.ts';
import { apiGroup, describeObject } from '../../core/kube/resource.ts';
import {
  hooksToDeleteAfterSync,
  type HookDeleteTask,
  type HookTask,
  type SyncPhase,
  type SyncPlan,
  type SyncTask,
  type WavePlan,
} from '../../core/kube/sync-plan.ts';
import type { ResourceResult, WaveMark } from './types.ts';

/** What persists between calls: the results so far and the wave reached. */
export interface Progress {
  results: ResourceResult[];
  currentWave?: WaveMark;
}

export interface StepOutcome extends Progress {
  phase: 'Running' | 'Succeeded' | 'Failed';
  message: string;
}

export interface OperationContext {
  resources: ResourceManager;
  mapper: RESTMapper;
  /** Desired objects by plan key (group/Kind/namespace/name), already resolved and tracked. */
  resolved: Map<string, ResolvedObject>;
  /** Finds the resource of a hook object (hooks may be named only at plan time). */
  resolveHook: (obj: KubeResource) => Promise<ResolvedObject>;
  /** Whether a live object is this application's (its tracking id): nothing else is deleted. */
  owns: (live: KubeResource) => boolean;
  /** How long a wave may take for its hooks to finish and its objects to become healthy. */
  waveTimeoutMs: number;
  now: () => Date;
  /** Aborted when this replica stops leading: nothing more is done or written. */
  signal?: AbortSignal;
  /**
   * Told of every object applied, with the object as stored: the comparer remembers it is in
   * sync at that resourceVersion, so the look after the sync sends no dry-run for it.
   */
  applied?: (r: ResolvedObject, stored: KubeResource) => void;
  /** Persists the progress; called before a hook is created, so a resumed run finds its result. */
  checkpoint: (progress: Progress & { message: string }) => Promise<void>;
}

/** Applies of one kind in flight at once, per operation (the dry-run's concurrency too). */
const APPLY_CONCURRENCY = 8;

/**
 * The wave's tasks in the order planned, consecutive applies of one kind grouped together; every
 * other task is a group of its own (prunes, hooks and hook deletions keep running one by one).
 */
function taskGroups(tasks: readonly SyncTask[]): SyncTask[][] {
  const groups: SyncTask[][] = [];
  for (const task of tasks) {
    const last = groups.at(-1);
    if (last && task.type === 'apply' && last[0]!.type === 'apply' && last[0]!.kind === task.kind)
      last.push(task);
    else groups.push([task]);
  }
  return groups;
}

/** Runs `task` over `items` with at most `limit` in flight; the first error is thrown after all settle. */
async function inParallel<T>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length && errors.length === 0) {
        try {
          await task(items[next++]!);
        } catch (err) {
          errors.push(err);
        }
      }
    }),
  );
  if (errors.length) throw errors[0];
}

/** Results written before a hook is created: a resumed run that finds no hook creates it. */
const CREATING = 'creating';

const PHASE_RANK: Readonly<Record<string, number>> = { PreSync: 0, Sync: 1, PostSync: 2, SyncFail: 3 };

/** Does what is due in the plan given the progress so far, without waiting for anything. */
export async function advanceSyncPlan(
  plan: SyncPlan,
  progress: Progress,
  ctx: OperationContext,
): Promise<StepOutcome> {
  const step = new Step(plan, progress, ctx);
  for (;;) {
    // After a failure only the SyncFail phase runs (it is empty without SyncFail hooks).
    const failing = step.failure() !== undefined;
    const phases = failing ? (plan.syncFail ? [plan.syncFail] : []) : plan.phases;
    const waves = phases.flatMap((p) => p.waves.map((w) => ({ phase: p.phase, wave: w })));
    let failed = false;
    for (const [i, { phase, wave }] of waves.entries()) {
      // Waves before the one reached were complete when it was reached.
      if (step.currentWave && before(phase, wave.wave, step.currentWave)) continue;
      const waits = await step.runWave(phase, wave, i === waves.length - 1);
      if (waits === 'failed') {
        failed = true;
        break;
      }
      if (waits.length === 0) continue;
      if (ctx.now().getTime() - Date.parse(step.currentWave!.startedAt) <= ctx.waveTimeoutMs) {
        const message = `waiting for ${phase} wave ${wave.wave}: ${waits.map((w) => w.what).join('; ')}`;
        return { ...step.progress(), phase: 'Running', message };
      }
      const seconds = Math.round(ctx.waveTimeoutMs / 1000);
      for (const w of waits) w.fail(`timed out after ${seconds}s waiting for ${w.what}`);
      failed = true;
      break;
    }
    // The first failure stops the run: SyncFail hooks next, unless it is theirs.
    if (!failed || failing) return step.finish();
  }
}

/** Whether (phase, wave) comes before the wave reached. */
function before(phase: string, wave: number, reached: WaveMark): boolean {
  const a = PHASE_RANK[phase] ?? 0;
  const b = PHASE_RANK[reached.syncPhase] ?? 0;
  return a < b || (a === b && wave < reached.wave);
}

interface Wait {
  what: string;
  /** Records that it never came (the wave timed out). */
  fail: (message: string) => void;
}

class Step {
  private readonly plan: SyncPlan;
  private readonly ctx: OperationContext;
  private readonly results: ResourceResult[];
  private readonly byId = new Map<string, ResourceResult>();
  currentWave: WaveMark | undefined;

  constructor(plan: SyncPlan, progress: Progress, ctx: OperationContext) {
    this.plan = plan;
    this.ctx = ctx;
    this.results = progress.results.map((r) => ({ ...r }));
    for (const r of this.results) this.byId.set(resultId(r), r);
    this.currentWave = progress.currentWave;
  }

  progress(): Progress {
    return {
      results: this.results.map((r) => ({ ...r })),
      ...(this.currentWave ? { currentWave: { ...this.currentWave } } : {}),
    };
  }

  /** The first failed result, the one that ended the sync (SyncFail hooks' own failures come later). */
  failure(): ResourceResult | undefined {
    return this.results.find((r) => isFailure(r) && r.syncPhase !== 'SyncFail');
  }

  /** Adds a task's result, or replaces the one it had. */
  private record(result: ResourceResult): ResourceResult {
    const id = resultId(result);
    const known = this.byId.get(id);
    if (known) this.results[this.results.indexOf(known)] = result;
    else this.results.push(result);
    this.byId.set(id, result);
    return result;
  }

  /** Runs the wave's tasks not yet done; what it still waits for, or 'failed'. */
  async runWave(phase: SyncPhase, wave: WavePlan, last: boolean): Promise<Wait[] | 'failed'> {
    const mark = this.currentWave;
    if (!mark || mark.syncPhase !== phase || mark.wave !== wave.wave) {
      this.currentWave = { syncPhase: phase, wave: wave.wave, startedAt: this.ctx.now().toISOString() };
    }
    const failures = this.results.filter(isFailure).length;
    const waits: Wait[] = [];
    const deleting = new Set<string>();
    const applied: { task: SyncTask; r: ResolvedObject }[] = [];
    for (const group of taskGroups(wave.tasks)) {
      this.ctx.signal?.throwIfAborted();
      const task = group[0]!;
      switch (task.type) {
        case 'apply': {
          // A run of objects of one kind is applied concurrently, the next kind after it (as
          // gitops-engine's "only wait if the type of the next task is different"): a Namespace
          // still exists before what goes in it, a CRD before its resources.
          // Results are recorded in plan order, whichever apply finished first.
          const tasks = group as (SyncTask & { type: 'apply' })[];
          const outcomes = new Array<ResourceResult | 'done'>(tasks.length);
          await inParallel([...tasks.keys()], APPLY_CONCURRENCY, async (i) => {
            outcomes[i] = await this.apply(tasks[i]!, this.resolvedOf(tasks[i]!));
          });
          for (const [i, outcome] of outcomes.entries()) {
            if (outcome !== 'done') this.record(outcome);
            if (outcome === 'done' || outcome.status === 'Synced')
              applied.push({ task: tasks[i]!, r: this.resolvedOf(tasks[i]!) });
          }
          break;
        }
        case 'prune':
          await this.prune(task);
          break;
        case 'hook-delete': {
          const wait = await this.deletePrevious(task);
          if (wait) {
            deleting.add(task.key);
            waits.push(wait);
          }
          break;
        }
        case 'hook': {
          if (deleting.has(task.key)) break; // its previous instance is still being deleted
          const wait = await this.hook(task);
          if (wait) waits.push(wait);
          break;
        }
      }
      if (this.results.filter(isFailure).length > failures) return 'failed';
    }
    // The next wave (or phase) starts once this one is healthy; the last wave need not wait.
    if (!last) waits.push(...(await this.unhealthy(applied)));
    return this.results.filter(isFailure).length > failures ? 'failed' : waits;
  }

  private resolvedOf(task: SyncTask & { type: 'apply' }): ResolvedObject {
    const r = this.ctx.resolved.get(task.key);
    if (!r) throw new Error(`internal: no resolved object for ${task.key}`);
    return r;
  }

  /**
   * Applies a desired object unless this operation did already ('done'); its result, for the
   * caller to record: Synced, or SyncFailed when the apiserver refused it.
   */
  private async apply(
    task: SyncTask & { type: 'apply' },
    r: ResolvedObject,
  ): Promise<ResourceResult | 'done'> {
    if (this.byId.has(taskId(task))) return 'done';
    try {
      const stored = await this.ctx.resources.apply(r);
      this.ctx.applied?.(r, stored);
    } catch (err) {
      if (!(err instanceof ApplyError)) throw err;
      return resultOf(task, r.object.apiVersion, 'SyncFailed', err.problems.join('; '));
    }
    // A CRD applied now may serve kinds the next waves apply.
    if (task.kind === 'CustomResourceDefinition') this.ctx.mapper.reset();
    return resultOf(
      task,
      r.object.apiVersion,
      'Synced',
      `${task.kind.toLowerCase()}/${task.name} serverside-applied`,
    );
  }

  private async prune(task: SyncTask & { type: 'prune' }): Promise<void> {
    if (this.byId.has(taskId(task))) return;
    if (task.requiresConfirmation || !this.ctx.owns(task.live)) {
      // Prune=confirm waits for a person; an object that is not ours is never deleted.
      const why = task.requiresConfirmation
        ? 'Prune=confirm: needs confirmation'
        : 'not tracked by this application';
      this.record(resultOf(task, task.live.apiVersion, 'PruneSkipped', why));
      return;
    }
    const mapping = await this.ctx.mapper.mapping(task.live.apiVersion, task.live.kind);
    await this.ctx.resources.delete(mapping, task.namespace ?? '', task.name, {
      ...(typeof task.live.metadata.uid === 'string' ? { uid: task.live.metadata.uid } : {}),
      propagationPolicy:
        task.propagationPolicy === 'orphan'
          ? 'Orphan'
          : task.propagationPolicy === 'background'
            ? 'Background'
            : 'Foreground',
    });
    this.record(resultOf(task, task.live.apiVersion, 'Pruned', 'pruned'));
  }

  /**
   * BeforeHookCreation: deletes the previous instance of a hook, and waits until it is gone. Once
   * this operation has recorded the hook, the live one is its own and is left alone.
   */
  private async deletePrevious(task: HookDeleteTask): Promise<Wait | undefined> {
    if (this.byId.has(taskId(task))) return undefined;
    const mapping = await this.ctx.mapper.mapping(task.live.apiVersion, task.live.kind);
    const live = await this.ctx.resources.get(mapping, task.namespace ?? '', task.name);
    if (!live) return undefined;
    const hookFailed = (message: string) =>
      this.record({
        ...resultOf(task, live.apiVersion, 'SyncFailed', message),
        hookType: task.phase,
        hookPhase: 'Failed',
      });
    if (!this.ctx.owns(live)) {
      hookFailed(`${describeObject(live)} exists and is not this application's hook: not replacing it`);
      return undefined;
    }
    if (!live.metadata.deletionTimestamp) {
      await this.ctx.resources.delete(mapping, task.namespace ?? '', task.name, {
        ...(live.metadata.uid ? { uid: live.metadata.uid } : {}),
        propagationPolicy: 'Background',
      });
    }
    return { what: `${describeObject(live)} to be deleted before it is created again`, fail: hookFailed };
  }

  /** Creates a hook once and reports whether it finished; a Wait while it runs. */
  private async hook(task: HookTask): Promise<Wait | undefined> {
    const known = this.byId.get(taskId(task));
    if (known && known.hookPhase !== 'Running') return undefined; // finished earlier
    const r = await this.ctx.resolveHook(task.object);
    const mapping = r.mapping.resource
      ? r.mapping
      : await this.ctx.mapper.mapping(r.object.apiVersion, r.object.kind);
    let live = known ? await this.ctx.resources.get(mapping, r.namespace, task.name) : undefined;
    let result = known;
    if (!result || (!live && result.message === CREATING)) {
      if (!result) {
        // Recorded, and persisted, before it exists: whoever resumes this operation finds it.
        result = this.record({
          ...resultOf(task, r.object.apiVersion, 'Synced', CREATING),
          hookPhase: 'Running',
        });
        await this.ctx.checkpoint({
          ...this.progress(),
          message: `creating ${task.hookType} hook ${task.name}`,
        });
      }
      try {
        live = await this.ctx.resources.apply(r);
      } catch (err) {
        if (!(err instanceof ApplyError)) throw err;
        this.record({
          ...result,
          status: 'SyncFailed',
          message: err.problems.join('; '),
          hookPhase: 'Failed',
        });
        return undefined;
      }
      result = this.record({ ...result, message: 'created' });
    }
    const running = result;
    const done = live ? hookResult(live) : { ok: false, message: 'deleted before it finished' };
    if (!done) {
      return {
        what: `${task.hookType} hook ${describeObject(r.object, r.namespace)} to finish`,
        fail: (message) => this.record({ ...running, status: 'SyncFailed', message, hookPhase: 'Failed' }),
      };
    }
    this.record({
      ...running,
      status: done.ok ? 'Synced' : 'SyncFailed',
      message: done.message,
      hookPhase: done.ok ? 'Succeeded' : 'Failed',
    });
    return undefined;
  }

  /** The wave's applied objects that are not healthy yet; a Degraded one fails the sync. */
  private async unhealthy(applied: { task: SyncTask; r: ResolvedObject }[]): Promise<Wait[]> {
    const waits: Wait[] = [];
    for (const { task, r } of applied) {
      this.ctx.signal?.throwIfAborted();
      const mapping = r.mapping.resource
        ? r.mapping
        : await this.ctx.mapper.mapping(r.object.apiVersion, r.object.kind);
      // Read from the server, not a cache: a cache that has not seen this apply yet would show the
      // object as it was, healthy before the change.
      const live = await this.ctx.resources.get(mapping, r.namespace, r.object.metadata.name!);
      const health = live ? assessHealth(live) : { status: 'Missing' as const };
      const result = this.byId.get(taskId(task))!;
      const what = describeObject(r.object, r.namespace);
      const fail = (message: string) => this.record({ ...result, message, hookPhase: 'Failed' });
      if (health?.status === 'Degraded') {
        fail(`${what} is Degraded${health.message ? `: ${health.message}` : ''}`);
        return [];
      }
      if (health && health.status !== 'Healthy')
        waits.push({ what: `${what} to become healthy (${health.status})`, fail });
    }
    return waits;
  }

  /** Every wave is done: the operation's outcome, and the hooks its delete policies remove. */
  async finish(): Promise<StepOutcome> {
    const failure = this.failure();
    let message: string;
    if (failure) {
      message = failureMessage(failure);
      const syncFail = this.results.find((r) => isFailure(r) && r.syncPhase === 'SyncFail');
      if (syncFail) message += `; SyncFail hooks failed too: ${failureMessage(syncFail)}`;
    } else {
      const applied = this.results.filter((r) => r.status === 'Synced' && !r.hookType).length;
      const pruned = this.results.filter((r) => r.status === 'Pruned').length;
      message = `successfully synced (${applied} applied${pruned ? `, ${pruned} pruned` : ''})`;
    }
    // Hook delete policies, decided by the outcome of the whole operation (as Argo CD), for the
    // hooks this operation created. A failed cleanup is reported, not fatal: the sync is done.
    try {
      for (const hook of hooksToDeleteAfterSync(this.plan, failure ? 'failed' : 'succeeded')) {
        if (!this.byId.has(taskId(hook))) continue;
        this.ctx.signal?.throwIfAborted();
        const r = await this.ctx.resolveHook(hook.object);
        await this.ctx.resources.delete(r.mapping, r.namespace, hook.name, {
          propagationPolicy: 'Background',
        });
      }
    } catch (err) {
      if (this.ctx.signal?.aborted) throw err;
      message += `; hook cleanup failed: ${(err as Error).message}`;
    }
    for (const w of this.plan.warnings) message += `; warning: ${w}`;
    const { results } = this.progress();
    return { phase: failure ? 'Failed' : 'Succeeded', message, results };
  }
}

function isFailure(r: ResourceResult): boolean {
  return r.status === 'SyncFailed' || r.hookPhase === 'Failed' || r.hookPhase === 'Error';
}

function failureMessage(r: ResourceResult): string {
  const what = `${r.kind.toLowerCase()}/${r.name}`;
  return r.hookType
    ? `${r.hookType} hook ${what} failed: ${r.message}`
    : `${r.syncPhase} ${what}: ${r.message}`;
}

/** A result's identity: the task it records (a hook may run in more than one phase). */
function resultId(r: ResourceResult): string {
  return `${r.syncPhase}:${r.group}/${r.kind}/${r.namespace}/${r.name}`;
}

function taskId(task: SyncTask): string {
  return `${task.phase}:${task.key}`;
}

function versionOf(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
}

function resultOf(
  task: SyncTask,
  apiVersion: string,
  status: ResourceResult['status'],
  message: string,
): ResourceResult {
  return {
    group: apiGroup(apiVersion),
    version: versionOf(apiVersion),
    kind: task.kind,
    namespace: task.namespace ?? '',
    name: task.name,
    status,
    message,
    syncPhase: task.phase,
    ...(task.type === 'hook' ? { hookType: task.hookType } : {}),
  };
}

/** A hook is done when its Job completes or its Pod succeeds; other kinds when healthy. */
/** A hook's outcome from its live object: undefined while it runs. */
export function hookResult(live: KubeResource): { ok: boolean; message: string } | undefined {
  const health = assessHealth(live);
  if (live.kind === 'Job' || live.kind === 'Pod' || live.kind === 'Workflow') {
    if (health?.status === 'Healthy') return { ok: true, message: health.message || 'completed' };
    if (health?.status === 'Degraded') return { ok: false, message: health.message || 'failed' };
    return undefined;
  }
  if (!health || health.status === 'Healthy') return { ok: true, message: 'created' };
  if (health.status === 'Degraded') return { ok: false, message: health.message || 'degraded' };
  return undefined;
}

/** Keys (group/Kind/namespace/name) of the objects an operation applied, hooks aside. */
export function appliedKeys(results: readonly ResourceResult[]): Set<string> {
  return new Set(results.filter((r) => r.status === 'Synced' && !r.hookType).map(objectKey));
}

/** Keys of the objects an operation pruned. */
export function prunedKeys(results: readonly ResourceResult[]): Set<string> {
  return new Set(results.filter((r) => r.status === 'Pruned').map(objectKey));
}

function objectKey(r: ResourceResult): string {
  return `${r.group}/${r.kind}/${r.namespace}/${r.name}`;
}
