// The Rollout's status as the decision leaves it: replica totals, phase and message, and the
// conditions Argo Rollouts reports (Healthy, Paused, Completed, Progressing, InvalidSpec). Pure.
import type { Decision } from './plan.ts';
import type { RolloutCondition, RolloutStatus } from './types.ts';

export function setCondition(
  status: RolloutStatus,
  now: Date,
  c: Omit<RolloutCondition, 'lastUpdateTime' | 'lastTransitionTime'>,
): void {
  const list = status.conditions ?? [];
  const existing = list.find((x) => x.type === c.type);
  if (
    existing &&
    existing.status === c.status &&
    existing.reason === c.reason &&
    existing.message === c.message
  )
    return;
  const at = now.toISOString();
  const next: RolloutCondition = {
    ...c,
    lastUpdateTime: at,
    lastTransitionTime: existing?.status === c.status ? existing.lastTransitionTime : at,
  };
  status.conditions = [...list.filter((x) => x.type !== c.type), next];
}

export function removeCondition(status: RolloutStatus, type: RolloutCondition['type']): void {
  if (!status.conditions?.some((c) => c.type === type)) return;
  status.conditions = status.conditions.filter((c) => c.type !== type);
}

/** An invalid spec or a missing reference: Degraded with the reasons, and nothing else is done. */
export function markInvalid(status: RolloutStatus, now: Date, problems: string[], generation?: number): void {
  status.phase = 'Degraded';
  status.message = `InvalidSpec: ${problems.join('; ')}`;
  // Observed: `rollout status` must see that this generation was looked at, and fail on it.
  status.observedGeneration = String(generation ?? '');
  setCondition(status, now, {
    type: 'InvalidSpec',
    status: 'True',
    reason: 'InvalidSpec',
    message: problems.join('; '),
  });
}

/**
 * The progress deadline counts time without progress (as Argo's): pods becoming available, a
 * step completing, or the end of a pause restart it; time spent paused never counts.
 */
export function noteProgress(d: Decision): void {
  const before = d.observed.rollout.status;
  if (!before?.progressStartedAt) return;
  const available = d.rss.reduce((n, rs) => n + (rs.status?.availableReplicas ?? 0), 0);
  const resumed = before.phase === 'Paused' && !(d.ro.spec.paused || d.status.pauseConditions?.length);
  if (resumed || available !== (before.availableReplicas ?? 0))
    d.status.progressStartedAt = d.now.toISOString();
}

/** progressDeadlineSeconds: Degraded (and aborted with progressDeadlineAbort) when no progress is made. */
export function checkProgressDeadline(d: Decision): void {
  const { ro, status, now } = d;
  if (status.pauseConditions?.length || ro.spec.paused) return;
  // A step completed in this decision is progress.
  if (status.currentStepIndex !== d.observed.rollout.status?.currentStepIndex)
    status.progressStartedAt = now.toISOString();
  const deadline = (ro.spec.progressDeadlineSeconds ?? 600) * 1000;
  const since = Date.parse(status.progressStartedAt ?? now.toISOString());
  if (now.getTime() - since < deadline) {
    d.wake(since + deadline);
    return;
  }
  setCondition(status, now, {
    type: 'Progressing',
    status: 'False',
    reason: 'ProgressDeadlineExceeded',
    message: `revision ${status.currentPodHash} has not progressed for ${deadline / 1000}s`,
  });
  if (ro.spec.progressDeadlineAbort && !status.abort) {
    status.abort = true;
    status.abortedAt = now.toISOString();
    status.message = `RolloutAborted: progress deadline of ${deadline / 1000}s exceeded`;
    d.event('Warning', 'RolloutAborted', `progress deadline of ${deadline / 1000}s exceeded`);
  }
}

/** Replica totals, phase, message and conditions from the decided ReplicaSets and status. */
export function summarize(d: Decision): void {
  const { ro, status, rss, newRS, now } = d;
  const live = rss.filter((rs) => !rs.metadata.deletionTimestamp);
  status.replicas = live.reduce((n, rs) => n + (rs.status?.replicas ?? 0), 0);
  status.readyReplicas = live.reduce((n, rs) => n + (rs.status?.readyReplicas ?? 0), 0);
  status.availableReplicas = live.reduce((n, rs) => n + (rs.status?.availableReplicas ?? 0), 0);
  status.updatedReplicas = newRS.status?.replicas ?? 0;
  status.HPAReplicas = status.replicas;
  status.selector = Object.entries({ ...ro.spec.selector?.matchLabels })
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  status.observedGeneration = String(ro.metadata.generation ?? '');
  const paused = ro.spec.paused || (status.pauseConditions?.length ?? 0) > 0;
  const stalled = status.conditions?.some(
    (c) => c.type === 'Progressing' && c.reason === 'ProgressDeadlineExceeded',
  );
  const complete = status.stableRS === status.currentPodHash;
  const allAvailable = (newRS.status?.availableReplicas ?? 0) >= d.replicas && status.replicas === d.replicas;
  if (status.abort) {
    status.phase = 'Degraded';
    // An abort by a user leaves the last message behind: say what happened.
    if (!status.message?.startsWith('RolloutAborted')) status.message = 'RolloutAborted';
  } else if (stalled) {
    status.phase = 'Degraded';
    status.message = 'ProgressDeadlineExceeded';
  } else if (paused) {
    status.phase = 'Paused';
    status.message = ro.spec.paused
      ? 'manually paused'
      : status.pauseConditions!.map((p) => p.reason).join(', ');
  } else if (complete && allAvailable) {
    status.phase = 'Healthy';
    delete status.message;
  } else {
    status.phase = 'Progressing';
    status.message = complete
      ? 'more replicas need to be available'
      : `updating to revision ${status.currentPodHash}`;
  }
  setCondition(status, now, {
    type: 'Healthy',
    status: status.phase === 'Healthy' ? 'True' : 'False',
    reason: status.phase,
    message: status.message ?? 'rollout is healthy',
  });
  setCondition(status, now, {
    type: 'Paused',
    status: paused ? 'True' : 'False',
    reason: paused ? 'RolloutPaused' : 'RolloutResumed',
    message: paused ? (status.message ?? '') : 'rollout is not paused',
  });
  if (complete && status.phase === 'Healthy') {
    setCondition(status, now, {
      type: 'Completed',
      status: 'True',
      reason: 'RolloutCompleted',
      message: 'rollout completed',
    });
  } else if (!complete) {
    setCondition(status, now, {
      type: 'Completed',
      status: 'False',
      reason: 'RolloutProgressing',
      message: 'rollout in progress',
    });
  }
}
