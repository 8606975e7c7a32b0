// Running a sync plan (gitops-engine's sync context): phases PreSync → Sync → PostSync, each wave
// in order; a wave's objects are applied (server-side apply) or pruned, its hooks created and
// waited for, and the next wave starts only once this one is healthy. The first failure stops the
// run; SyncFail hooks then run. Every object touched is reported, so a failed sync says exactly
// what it had already changed.
import { ApplyError, type ResolvedObject, type ResourceManager } from '../../core/kube/apply.ts';
import type { RESTMapper } from '../../core/kube/discovery.ts';
import { assessHealth } from '../../core/kube/health.ts';
import type { KubeResource } from '../../core/kube/resource.ts';
import { apiGroup, describeObject } from '../../core/kube/resource.ts';
import {
  hooksToDeleteAfterSync,
  type HookTask,
  type PhasePlan,
  type SyncPlan,
  type SyncTask,
} from '../../core/kube/sync-plan.ts';
import type { ResourceResult } from './types.ts';

export interface OperationOutcome {
  /** Failed: the objects or hooks refused; Error: the cluster or network failed us (retried). */
  phase: 'Succeeded' | 'Failed' | 'Error';
  /** A dry run: nothing was applied, and history and inventory stay as they are. */
  dryRun?: boolean;
  message: string;
  results: ResourceResult[];
  /** Objects applied (and so now live and tracked), including by a run that failed part-way. */
  applied: ResolvedObject[];
  /** Keys of objects deleted by prune. */
  pruned: string[];
}

export interface OperationContext {
  resources: ResourceManager;
  mapper: RESTMapper;
  /** Desired objects by plan key (group/Kind/namespace/name), already resolved and tracked. */
  resolved: Map<string, ResolvedObject>;
  /** Finds the resource of a hook object (hooks may be named only at plan time). */
  resolveHook: (obj: KubeResource) => Promise<ResolvedObject>;
  /** How long a wave may take to become healthy, or a hook to finish. */
  waveTimeoutMs: number;
  pollMs?: number;
  signal?: AbortSignal;
  /** Progress for the operation state while it runs. */
  onProgress?: (message: string) => void;
  /** Whether a live object is this application's (its tracking id): nothing else is deleted. */
  owns: (live: KubeResource) => boolean;
}

class WaveFailure extends Error {}

function versionOf(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
}

function resultOf(
  task: SyncTask,
  obj: KubeResource,
  status: ResourceResult['status'],
  message: string,
): ResourceResult {
  return {
    group: apiGroup(obj.apiVersion),
    version: versionOf(obj.apiVersion),
    kind: task.kind,
    namespace: task.namespace ?? '',
    name: task.name,
    status,
    message,
    syncPhase: task.phase,
    ...(task.type === 'hook' ? { hookType: task.hookType } : {}),
  };
}

/**
 * Runs the plan and reports what it did, whatever happens: only a stop (the signal) escapes, since
 * a replica that stopped leading must not write even a report.
 */
export async function runSyncPlan(plan: SyncPlan, ctx: OperationContext): Promise<OperationOutcome> {
  const outcome: OperationOutcome = { phase: 'Succeeded', message: '', results: [], applied: [], pruned: [] };
  let failure: string | undefined;
  try {
    for (const [i, phase] of plan.phases.entries())
      await runPhase(phase, ctx, outcome, i === plan.phases.length - 1);
  } catch (err) {
    if (ctx.signal?.aborted) throw err;
    if (!(err instanceof WaveFailure) && !(err instanceof ApplyError)) {
      outcome.phase = 'Error';
      outcome.message = `sync interrupted after ${outcome.applied.length} applied and ${outcome.pruned.length} pruned: ${(err as Error).message}`;
      return outcome;
    }
    failure = err.message;
  }
  if (failure !== undefined) {
    outcome.phase = 'Failed';
    outcome.message = failure;
    if (plan.syncFail) {
      try {
        await runPhase(plan.syncFail, ctx, outcome, true);
      } catch (err) {
        if (ctx.signal?.aborted) throw err;
        outcome.message += `; SyncFail hooks failed too: ${(err as Error).message}`;
      }
    }
  } else {
    const pruned = outcome.pruned.length;
    outcome.message = `successfully synced (${outcome.applied.length} applied${pruned ? `, ${pruned} pruned` : ''})`;
  }
  // Hook delete policies, decided by the outcome of the whole operation (as Argo CD). A failed
  // cleanup is reported, not fatal: the sync itself is done.
  try {
    for (const hook of hooksToDeleteAfterSync(plan, failure === undefined ? 'succeeded' : 'failed')) {
      ctx.signal?.throwIfAborted();
      const r = await ctx.resolveHook(hook.object);
      await ctx.resources.delete(r.mapping, r.namespace, hook.name, { propagationPolicy: 'Background' });
    }
  } catch (err) {
    if (ctx.signal?.aborted) throw err;
    outcome.message += `; hook cleanup failed: ${(err as Error).message}`;
  }
  for (const w of plan.warnings) outcome.message += `; warning: ${w}`;
  return outcome;
}

async function runPhase(
  phase: PhasePlan,
  ctx: OperationContext,
  outcome: OperationOutcome,
  lastPhase: boolean,
): Promise<void> {
  for (const [i, wave] of phase.waves.entries()) {
    ctx.onProgress?.(`${phase.phase} wave ${wave.wave}`);
    const touched: ResolvedObject[] = [];
    for (const task of wave.tasks) {
      ctx.signal?.throwIfAborted();
      switch (task.type) {
        case 'apply': {
          const r = ctx.resolved.get(task.key);
          if (!r) throw new Error(`internal: no resolved object for ${task.key}`);
          try {
            await ctx.resources.apply(r);
          } catch (err) {
            if (err instanceof ApplyError)
              outcome.results.push(resultOf(task, r.object, 'SyncFailed', err.problems.join('; ')));
            throw err;
          }
          // A CRD applied now may serve kinds the next waves apply.
          if (task.kind === 'CustomResourceDefinition') ctx.mapper.reset();
          outcome.applied.push(r);
          touched.push(r);
          outcome.results.push(
            resultOf(task, r.object, 'Synced', `${task.kind.toLowerCase()}/${task.name} serverside-applied`),
          );
          break;
        }
        case 'prune': {
          if (task.requiresConfirmation || !ctx.owns(task.live)) {
            // Prune=confirm waits for a person; an object that is not ours is never deleted.
            const why = task.requiresConfirmation
              ? 'Prune=confirm: needs confirmation'
              : 'not tracked by this application';
            outcome.results.push(resultOf(task, task.live, 'PruneSkipped', why));
            break;
          }
          const mapping = await ctx.mapper.mapping(task.live.apiVersion, task.live.kind);
          await ctx.resources.delete(mapping, task.namespace ?? '', task.name, {
            ...(typeof task.live.metadata.uid === 'string' ? { uid: task.live.metadata.uid } : {}),
            propagationPolicy:
              task.propagationPolicy === 'orphan'
                ? 'Orphan'
                : task.propagationPolicy === 'background'
                  ? 'Background'
                  : 'Foreground',
          });
          outcome.pruned.push(task.key);
          outcome.results.push(resultOf(task, task.live, 'Pruned', 'pruned'));
          break;
        }
        case 'hook-delete': {
          if (!ctx.owns(task.live)) {
            throw new WaveFailure(
              `${describeObject(task.live)} exists and is not this application's hook: not replacing it`,
            );
          }
          const mapping = await ctx.mapper.mapping(task.live.apiVersion, task.live.kind);
          await ctx.resources.delete(mapping, task.namespace ?? '', task.name, {
            propagationPolicy: 'Background',
          });
          await waitUntil(
            ctx,
            `${describeObject(task.live)} to be deleted before it is created again`,
            async () =>
              (await ctx.resources.get(mapping, task.namespace ?? '', task.name)) === undefined
                ? true
                : undefined,
          );
          break;
        }
        case 'hook':
          await runHook(task, ctx, outcome);
          break;
      }
    }
    // The next wave (or phase) starts once this one is healthy; the last wave need not wait.
    const more = i < phase.waves.length - 1 || !lastPhase;
    if (more && touched.length) await waitHealthy(touched, ctx, `${phase.phase} wave ${wave.wave}`);
  }
}

async function runHook(task: HookTask, ctx: OperationContext, outcome: OperationOutcome): Promise<void> {
  const r = await ctx.resolveHook(task.object);
  try {
    await ctx.resources.apply(r);
  } catch (err) {
    if (err instanceof ApplyError)
      outcome.results.push({
        ...resultOf(task, r.object, 'SyncFailed', err.problems.join('; ')),
        hookPhase: 'Failed',
      });
    throw err;
  }
  const what = `${task.hookType} hook ${describeObject(r.object, r.namespace)}`;
  const finished = await waitUntil(ctx, `${what} to finish`, async () => {
    const live = await ctx.resources.get(r.mapping, r.namespace, task.name);
    if (!live) return { ok: false, message: 'deleted before it finished' };
    return hookResult(live);
  });
  outcome.results.push({
    ...resultOf(task, r.object, finished.ok ? 'Synced' : 'SyncFailed', finished.message),
    hookPhase: finished.ok ? 'Succeeded' : 'Failed',
  });
  if (!finished.ok) throw new WaveFailure(`${what} failed: ${finished.message}`);
}

/** A hook is done when its Job completes or its Pod succeeds; other kinds when healthy. */
function hookResult(live: KubeResource): { ok: boolean; message: string } | undefined {
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

async function waitHealthy(objects: ResolvedObject[], ctx: OperationContext, what: string): Promise<void> {
  await waitUntil(ctx, `${what} to become healthy`, async () => {
    for (const r of objects) {
      const live = await ctx.resources.get(
        r.mapping.resource ? r.mapping : await ctx.mapper.mapping(r.object.apiVersion, r.object.kind),
        r.namespace,
        r.object.metadata.name!,
      );
      const health = live ? assessHealth(live) : { status: 'Missing' as const };
      if (health?.status === 'Degraded') {
        throw new WaveFailure(
          `${what}: ${describeObject(r.object, r.namespace)} is Degraded${health.message ? `: ${health.message}` : ''}`,
        );
      }
      if (health && health.status !== 'Healthy') return undefined;
    }
    return true;
  });
}

async function waitUntil<T>(
  ctx: OperationContext,
  what: string,
  check: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + ctx.waveTimeoutMs;
  for (;;) {
    ctx.signal?.throwIfAborted();
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new WaveFailure(`timed out after ${Math.round(ctx.waveTimeoutMs / 1000)}s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, ctx.pollMs ?? 500));
  }
}
