// PreDelete and PostDelete hooks: what deleting an Application runs, as Argo CD does
// (https://argo-cd.readthedocs.io/en/stable/user-guide/resource_hooks/ and its controller's
// hook.go). Each has a finalizer of Argo CD's name on the Application, added by the controller
// when the desired state has such a hook, so the Application waits for them:
// - pre-delete-finalizer: PreDelete hooks are created before any resource is deleted; the
//   deletion waits until they finished, and a failed one stops it (its resources stay) until the
//   hook is fixed or the finalizer removed. Stopping is the safe side: a PreDelete hook is
//   usually a backup or a drain, and deleting after it failed could lose what it was to save.
// - post-delete-finalizer: PostDelete hooks are created once the resources are gone; the
//   Application waits until none is still running (a failed one does not keep it, as in Argo CD);
// - post-delete-finalizer/cleanup: then each hook is deleted as its delete policy says
//   (HookSucceeded when all succeeded, HookFailed when one failed).
// The live hooks are the state: a restarted controller finds them by name and goes on.
// This file decides; the reconciler gathers the hooks and acts.
import { hookDeletePolicies, hookTypes } from '../../core/kube/sync-plan.ts';
import type { KubeResource } from '../../core/kube/resource.ts';

export const PRE_DELETE_FINALIZER = 'pre-delete-finalizer.argocd.argoproj.io';
export const POST_DELETE_FINALIZER = 'post-delete-finalizer.argocd.argoproj.io';
export const POST_DELETE_CLEANUP_FINALIZER = 'post-delete-finalizer.argocd.argoproj.io/cleanup';

export type DeletionHookType = 'PreDelete' | 'PostDelete';

/** The finalizers an Application with these desired objects needs for its deletion hooks. */
export function deletionFinalizers(objects: readonly KubeResource[]): string[] {
  const types = new Set(objects.flatMap((o) => hookTypes(o)));
  return [
    ...(types.has('PreDelete') ? [PRE_DELETE_FINALIZER] : []),
    ...(types.has('PostDelete') ? [POST_DELETE_FINALIZER, POST_DELETE_CLEANUP_FINALIZER] : []),
  ];
}

/**
 * The name a deletion hook is created with. One with only generateName gets a name derived from
 * the Application's deletionTimestamp: the same at every pass of this deletion, so it is created
 * once and found again after a restart.
 */
export function deletionHookName(hook: KubeResource, type: DeletionHookType, deletedAt: string): string {
  if (hook.metadata.name) return hook.metadata.name;
  const seconds = Math.floor(Date.parse(deletedAt) / 1000);
  return `${hook.metadata.generateName ?? ''}${type.toLowerCase()}-${seconds}`;
}

/** A deletion hook of the desired state, and what is live under its name. */
export interface DeletionHookState {
  name: string;
  object: KubeResource;
  live: KubeResource | undefined;
  /** From the live object: undefined while it runs. */
  result: { ok: boolean; message: string } | undefined;
}

export type DeletionHookStep =
  /** Create these (the others exist); look again soon. */
  | { action: 'create'; hooks: DeletionHookState[] }
  /** Some are still running. */
  | { action: 'wait'; message: string }
  /** A PreDelete hook failed: the deletion stops here. */
  | { action: 'blocked'; message: string }
  /** All finished; `failed` when one of them failed (a PostDelete hook's failure does not block). */
  | { action: 'done'; failed: boolean };

export function decideDeletionHooks(
  type: DeletionHookType,
  hooks: readonly DeletionHookState[],
): DeletionHookStep {
  const missing = hooks.filter((h) => !h.live);
  if (missing.length) return { action: 'create', hooks: missing };
  const failed = hooks.filter((h) => h.result && !h.result.ok);
  if (type === 'PreDelete' && failed.length) {
    return {
      action: 'blocked',
      message: `PreDelete hook ${failed.map((h) => `${h.object.kind}/${h.name}`).join(', ')} failed (${failed[0]!.result!.message}): the application's resources are kept; fix the hook or remove the ${PRE_DELETE_FINALIZER} finalizer`,
    };
  }
  const running = hooks.filter((h) => !h.result);
  if (running.length) {
    return {
      action: 'wait',
      message: `waiting for ${type} hook ${running.map((h) => `${h.object.kind}/${h.name}`).join(', ')} to finish`,
    };
  }
  return { action: 'done', failed: failed.length > 0 };
}

/** The finished hooks their delete policies remove (Argo CD's cleanupPostDeleteHooks). */
export function deletionHooksToDelete(hooks: readonly DeletionHookState[]): DeletionHookState[] {
  const failed = hooks.some((h) => h.result && !h.result.ok);
  return hooks.filter((h) => {
    if (!h.live) return false;
    const policies = hookDeletePolicies(h.object);
    return failed ? policies.includes('HookFailed') : policies.includes('HookSucceeded');
  });
}

export function isDeletionHook(obj: KubeResource, type: DeletionHookType): boolean {
  return hookTypes(obj).includes(type);
}
