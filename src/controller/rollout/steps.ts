// The steps both strategies share: pauses, analysis slots, abort and promotion. Pure: they
// change the decision's status and plan, and read only what was gathered.
import { runCompleted, type AnalysisOutcome, type Decision } from './plan.ts';
import type { PauseReason } from './types.ts';

/**
 * Holds a pause: adds the pause condition once, and reports true when it is over (its duration
 * passed, or a user promoted, which removes the condition after the controller set it).
 */
export function holdPause(d: Decision, reason: PauseReason, durationMs: number | undefined): boolean {
  const { status, now } = d;
  const key = `${reason}@${status.currentStepIndex ?? 0}`;
  const held = status.pauseConditions?.find((p) => p.reason === reason);
  if (!held) {
    if (status.controllerPause && status.currentStepHash === key) {
      // We paused here before and the condition is gone: someone promoted. Move on.
      delete status.controllerPause;
      delete status.currentStepHash;
      return true;
    }
    status.pauseConditions = [...(status.pauseConditions ?? []), { reason, startTime: now.toISOString() }];
    status.controllerPause = true;
    status.currentStepHash = key;
    d.event(
      'Normal',
      'RolloutPaused',
      `paused (${reason})${durationMs !== undefined ? ` for ${durationMs / 1000}s` : ' until promoted'}`,
    );
    if (durationMs !== undefined) d.wake(now.getTime() + durationMs);
    return durationMs === 0;
  }
  if (durationMs !== undefined) {
    const end = Date.parse(held.startTime) + durationMs;
    if (now.getTime() >= end) {
      status.pauseConditions = status.pauseConditions!.filter((p) => p !== held);
      if (status.pauseConditions.length === 0) delete status.pauseConditions;
      delete status.controllerPause;
      delete status.currentStepHash;
      return true;
    }
    d.wake(end);
  }
  return false;
}

/** What status records of a run. */
export function runStatus(outcome: AnalysisOutcome): { name: string; status: string; message?: string } {
  return {
    name: outcome.name,
    status: outcome.phase,
    ...(outcome.message ? { message: outcome.message } : {}),
  };
}

export function failed(outcome: AnalysisOutcome): boolean {
  return outcome.phase === 'Failed' || outcome.phase === 'Error';
}

/** Background analysis ends with the update it watched (completion or abort). */
export function stopBackgroundAnalysis(d: Decision): void {
  const run = d.status.canary?.currentBackgroundAnalysisRunStatus;
  if (run && !runCompleted(run.status)) d.terminateRun(run.name);
}

/**
 * An aborted rollout's analysis runs that are still measuring end with it (as Argo cancels
 * them): a step's or blue/green's run would otherwise go on, e.g. a dispatched workflow.
 */
export function stopAnalysesOnAbort(d: Decision): void {
  const { canary, blueGreen } = d.status;
  for (const run of [
    canary?.currentStepAnalysisRunStatus,
    canary?.currentBackgroundAnalysisRunStatus,
    blueGreen?.prePromotionAnalysisRunStatus,
    blueGreen?.postPromotionAnalysisRunStatus,
  ]) {
    if (run && !runCompleted(run.status)) d.terminateRun(run.name);
  }
}

export function abort(d: Decision, message: string): void {
  stopBackgroundAnalysis(d);
  d.status.abort = true;
  d.status.abortedAt = d.now.toISOString();
  delete d.status.pauseConditions;
  delete d.status.controllerPause;
  d.status.message = `RolloutAborted: ${message}`;
  d.event('Warning', 'RolloutAborted', message);
}

/** The new revision becomes the stable one. */
export function promote(d: Decision): void {
  const { status } = d;
  stopBackgroundAnalysis(d);
  if (status.stableRS !== status.currentPodHash)
    d.event('Normal', 'RolloutCompleted', `revision ${status.currentPodHash} is now stable`);
  status.stableRS = status.currentPodHash!;
  delete status.pauseConditions;
  delete status.controllerPause;
  delete status.currentStepHash;
  delete status.promoteFull;
  d.stableRS = d.newRS;
}
