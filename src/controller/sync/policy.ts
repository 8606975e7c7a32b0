// The sync policy, pure: from an Application (spec.syncPolicy, a requested operation, the last
// operation in its status), what the comparison found and the time, decide to sync now, to sync at
// a later time, or to do nothing, and say why. It follows Argo CD's autoSync
// (controller/appcontroller.go). Everything it remembers is in the Application's status: the last
// operation (operationState: its phase, revision, source, finishedAt, retryCount) and the self-heal
// attempts it counted (operationState.operation.sync.autoHealAttemptsCount, Argo's field), so a
// restarted or failed-over controller decides exactly as the one before it would have.
//
// Layout: the inputs and the decision type; decideSync; the two backoffs (retry, self-heal);
// awaitsProgress, whether to look again soon.
import { parseDurationMs } from '../../core/duration.ts';
import { stableJSON } from '../../core/json.ts';
import { assessHealth } from '../../core/kube/health.ts';
import type { KubeResource } from '../../core/kube/resource.ts';
import {
  hasMultipleSources,
  type Application,
  type OperationState,
  type SyncOperation,
  type SyncPolicy,
} from './types.ts';

/** What a comparison found, as far as the policy cares. */
export interface ComparisonSummary {
  /** The commit the application's source resolves to now. */
  revision: string;
  /** Desired objects that differ from the cluster or are missing from it. */
  outOfSync: number;
  /** Objects this application manages that are no longer desired. */
  requiresPruning: number;
  /** Desired objects the apiserver refused in a dry-run. */
  errors: number;
  /** The source rendered no objects and no hooks. */
  empty: boolean;
}

/** An exponential backoff: duration × factor^n, capped at max. */
export interface Backoff {
  durationMs: number;
  factor: number;
  maxMs: number;
}

/**
 * Argo CD's self-heal backoff, the application controller's defaults: 2 s, factor 3, capped at
 * 5 minutes (--self-heal-backoff-timeout-seconds, -factor, -cap-seconds), so heals of one revision
 * are spaced 0, 2 s, 6 s, 18 s, 54 s, 162 s, then 300 s apart.
 */
export const SELF_HEAL_BACKOFF: Backoff = { durationMs: 2000, factor: 3, maxMs: 300_000 };

export interface PolicyInput {
  app: Application;
  comparison: ComparisonSummary;
  now: Date;
  selfHealBackoff?: Backoff;
}

export type SyncDecision =
  /** Start `operation` now; `retryCount` is the operation state's (retries of a failed sync). */
  | { action: 'sync'; operation: SyncOperation; retryCount: number; reason: string }
  /** Nothing now; look again at `at` (a retry or self-heal backoff runs until then). */
  | { action: 'wait'; at: Date; reason: string }
  /** Nothing to do; `error` is a SyncError condition to report (the user must act). */
  | { action: 'none'; reason: string; error?: string };

export function decideSync({ app, comparison: c, now, selfHealBackoff }: PolicyInput): SyncDecision {
  const last = app.status?.operationState;
  // One operation at a time (as Argo CD): a running one goes on, even when another is requested.
  if (last?.phase === 'Running' && !last.finishedAt)
    return { action: 'none', reason: 'an operation is running' };
  // A requested operation (a manual sync or rollback) wins over everything automation would say.
  if (app.operation) {
    const who = app.operation.initiatedBy?.username;
    return {
      action: 'sync',
      operation: app.operation,
      retryCount: 0,
      reason: `requested${who ? ` by ${who}` : ''}`,
    };
  }
  const policy = app.spec.syncPolicy;
  const automated = policy?.automated;
  if (!automated || automated.enabled === false) return { action: 'none', reason: 'automated sync is off' };
  if (c.outOfSync === 0 && c.requiresPruning === 0 && c.errors === 0)
    return { action: 'none', reason: 'in sync' };
  if (c.outOfSync === 0 && c.errors === 0 && !automated.prune) {
    return { action: 'none', reason: 'only pruning would change anything, and automated prune is off' };
  }
  if (c.empty && !automated.allowEmpty) {
    return {
      action: 'none',
      reason: 'empty render',
      error:
        'the source rendered no objects: automated sync refuses to sync an empty application (set allowEmpty to allow it)',
    };
  }
  const operation: SyncOperation = {
    sync: {
      // Multiple sources: Argo CD's revisions, one per source (c.revision joins them with ',').
      ...(hasMultipleSources(app) ? { revisions: c.revision.split(',') } : { revision: c.revision }),
      prune: automated.prune ?? false,
    },
    initiatedBy: { automated: true },
  };
  const rev = c.revision.slice(0, 12);
  if (!attempted(app, last, c.revision)) {
    return { action: 'sync', operation, retryCount: 0, reason: `${rev} is not synced yet` };
  }
  if (last.phase !== 'Succeeded') return retry(policy, last, operation, rev, now);
  // Argo CD syncs a revision once; drift from it is corrected only with selfHeal.
  if (!automated.selfHeal) return { action: 'none', reason: `already synced to ${rev}; selfHeal is off` };
  const attempts = last.operation.sync?.autoHealAttemptsCount ?? 0;
  const at = after(last.finishedAt, now, selfHealDelayMs(attempts, selfHealBackoff));
  if (at > now)
    return { action: 'wait', at, reason: `self-heal attempt ${attempts + 1} of ${rev} backs off` };
  return {
    action: 'sync',
    operation: { ...operation, sync: { ...operation.sync, autoHealAttemptsCount: attempts + 1 } },
    retryCount: 0,
    reason: `self-heal of ${rev} (attempt ${attempts + 1})`,
  };
}

/**
 * Whether the last operation already tried this revision with this source (a spec edit is a new
 * attempt, as in Argo CD's alreadyAttemptedSync). A dry run tried nothing.
 */
function attempted(
  app: Application,
  last: OperationState | undefined,
  revision: string,
): last is OperationState {
  if (!last?.syncResult || last.operation.sync?.dryRun) return false;
  return (
    last.syncResult.revision === revision &&
    stableJSON(last.syncResult.sources ?? last.syncResult.source) ===
      stableJSON(hasMultipleSources(app) ? app.spec.sources : app.spec.source)
  );
}

/** A failed sync of this revision is retried only as syncPolicy.retry allows (limit < 0: forever). */
function retry(
  policy: SyncPolicy | undefined,
  last: OperationState,
  operation: SyncOperation,
  rev: string,
  now: Date,
): SyncDecision {
  const retry = policy?.retry;
  const retries = last.retryCount ?? 0;
  const limit = retry?.limit ?? 0;
  if (!retry || (limit >= 0 && retries >= limit)) {
    return {
      action: 'none',
      reason: 'the last sync failed',
      error: `the last sync of ${rev} failed; not retrying: ${last.message}`,
    };
  }
  const at = after(last.finishedAt, now, backoffMs(retry.backoff, retries));
  if (at > now) return { action: 'wait', at, reason: `retry ${retries + 1} of ${rev} backs off` };
  return {
    action: 'sync',
    operation: { ...operation, retry },
    retryCount: retries + 1,
    reason: `retry ${retries + 1} of ${rev}`,
  };
}

/** `delayMs` after `since` (a timestamp), or after now when there is none. */
function after(since: string | undefined, now: Date, delayMs: number): Date {
  const start = since ? Date.parse(since) : NaN;
  return new Date((Number.isNaN(start) ? now.getTime() : start) + delayMs);
}

/**
 * Argo CD's retry backoff (RetryStrategy.NextRetryAt): duration × factor^retries, capped at
 * maxDuration; defaults 5 s, 2, 3 m. A duration without a unit is in seconds, as in Argo CD.
 */
export function backoffMs(backoff: NonNullable<SyncPolicy['retry']>['backoff'], retries: number): number {
  const base = argoDurationMs(backoff?.duration) ?? 5000;
  const cap = argoDurationMs(backoff?.maxDuration) ?? 180_000;
  return Math.min(cap, base * (backoff?.factor ?? 2) ** retries);
}

/** Delay before self-heal attempt `attempts + 1` (Argo CD's selfHealRemainingBackoff): none for the first. */
export function selfHealDelayMs(attempts: number, backoff: Backoff = SELF_HEAL_BACKOFF): number {
  if (attempts <= 0) return 0;
  return Math.min(backoff.maxMs, backoff.durationMs * backoff.factor ** (attempts - 1));
}

function argoDurationMs(text: string | undefined): number | undefined {
  const s = text?.trim() ?? '';
  return /^\d+$/.test(s) ? Number(s) * 1000 : parseDurationMs(s);
}

/** How long after a sync a missing object is taken for one the watch has yet to show. */
const JUST_APPLIED_MS = 30_000;

/**
 * Whether something is on its way that the watches might not wake us for: an object whose health
 * is Progressing, or a missing object the last sync of this revision applied moments ago. A
 * missing object nothing is about to create is not progressing: one the server refused in the
 * dry-run, one a failed or manual sync left out. Polling those every 2 s re-sent the refused
 * dry-run forever; the watch on managed objects, a new commit or a spec change wake us instead.
 */
export function awaitsProgress(
  app: Application,
  revision: string,
  objects: readonly { live?: KubeResource | undefined; error?: string }[],
  now: Date,
): boolean {
  const last = app.status?.operationState;
  const justApplied =
    last?.phase === 'Succeeded' &&
    last.syncResult?.revision === revision &&
    last.finishedAt !== undefined &&
    now.getTime() - Date.parse(last.finishedAt) < JUST_APPLIED_MS;
  return objects.some((c) => {
    if (c.error !== undefined) return false;
    if (!c.live) return justApplied;
    return assessHealth(c.live)?.status === 'Progressing';
  });
}
