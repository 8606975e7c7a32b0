// The canary strategy's decision (Argo Rollouts' canary): walk the steps (setWeight, pause,
// analysis, setCanaryScale) until one has to wait; weights come from replica counts, or from an
// nginx canary Ingress when trafficRouting is set. Pure: it fills in the Decision.
import { planCanaryIngresses } from './nginx.ts';
import type { Decision } from './plan.ts';
import { canaryCounts, canaryScaleAt, pauseDurationMs, resolveIntOrPercent, weightAt } from './replicas.ts';
import { checkProgressDeadline } from './status.ts';
import { abort, failed, holdPause, promote, runStatus, stopAnalysesOnAbort } from './steps.ts';
import { DEFAULT_SCALE_DOWN_DELAY, type CanaryStep } from './types.ts';

export function decideCanary(d: Decision): void {
  walkCanary(d);
  // Without steps there is no step index (Argo leaves it unset, conformance-tested).
  if (!d.ro.spec.strategy!.canary!.steps?.length) delete d.status.currentStepIndex;
}

function walkCanary(d: Decision): void {
  const { ro, status, replicas, newRS } = d;
  const canary = ro.spec.strategy!.canary!;
  const steps = canary.steps ?? [];
  const router = Boolean(canary.trafficRouting?.nginx);
  const updating = status.currentPodHash !== status.stableRS;
  const stableRS = d.stableRS;
  const scaleDownDelay = router ? (canary.scaleDownDelaySeconds ?? DEFAULT_SCALE_DOWN_DELAY) : 0;

  if (!updating || !stableRS) {
    // Steady state: everything on the stable revision.
    status.currentStepIndex = steps.length;
    d.scale(newRS, replicas);
    d.scaleDownOthers([newRS], scaleDownDelay);
    d.pointServices([canary.stableService, canary.canaryService], status.stableRS!);
    route(d, 0);
    setWeights(d, 0);
    return;
  }

  // A revision overtaken mid-canary by a newer one is neither stable nor canary: its pods go
  // (as Argo scales down such intermediate ReplicaSets) instead of serving until the end.
  d.scaleDownOthers([newRS, stableRS], scaleDownDelay);

  if (status.abort) {
    stopAnalysesOnAbort(d);
    // Back to the stable revision: act moves traffic first, then removes the canary's pods. As
    // Argo does, the canary Service selects the stable pods too (whatever still sends to it is
    // served, not dropped, once the canary's pods go), and the step index is back at 0.
    route(d, 0);
    d.pointServices([canary.stableService, canary.canaryService], status.stableRS!);
    if (steps.length) status.currentStepIndex = 0;
    d.scale(stableRS, replicas);
    d.scaleDownAfter(newRS, router ? (canary.abortScaleDownDelaySeconds ?? DEFAULT_SCALE_DOWN_DELAY) : 0);
    setWeights(d, 0);
    return;
  }

  d.pointServices([canary.stableService], status.stableRS!);
  d.pointServices([canary.canaryService], status.currentPodHash!);
  backgroundAnalysis(d);
  if (status.abort) return walkCanary(d);

  let index = status.promoteFull ? steps.length : (status.currentStepIndex ?? 0);
  // Walk the steps until one has to wait.
  for (; index < steps.length; index++) {
    status.currentStepIndex = index;
    if (ro.spec.paused) break;
    const step = steps[index]!;
    const weight = weightAt(steps, index);
    if (step.setWeight !== undefined || step.setCanaryScale !== undefined) {
      if (!reachWeight(d, weight, router, canaryScaleAt(steps, index))) break;
      continue;
    }
    if (step.pause) {
      if (!holdPause(d, 'CanaryPauseStep', pauseDurationMs(step.pause.duration))) break;
      continue;
    }
    if (step.analysis) {
      const outcome = d.analysis(
        `${ro.metadata.name}-${status.currentPodHash}-${index}`,
        step.analysis,
        status.canary?.currentStepAnalysisRunStatus?.name,
      );
      status.canary = { ...status.canary, currentStepAnalysisRunStatus: runStatus(outcome) };
      if (outcome.phase === 'Successful') continue;
      if (failed(outcome)) {
        abort(
          d,
          `analysis run ${outcome.name} ${outcome.phase.toLowerCase()}${outcome.message ? `: ${outcome.message}` : ''}`,
        );
        return walkCanary(d);
      }
      if (outcome.phase === 'Inconclusive') {
        if (!holdPause(d, 'InconclusiveAnalysisRun', undefined)) break;
        continue;
      }
      break;
    }
  }
  // Keep the pods of the step we are at.
  if (index < steps.length) {
    status.currentStepIndex = index;
    // A pause or analysis keeps the weight (and canary scale) the steps before it set.
    const step = steps[index]!;
    if (step.setWeight === undefined && step.setCanaryScale === undefined)
      reachWeight(d, weightAt(steps, index), router, canaryScaleAt(steps, index));
    checkProgressDeadline(d);
    return;
  }
  // All steps done: the canary becomes the stable revision.
  status.currentStepIndex = steps.length;
  if (!reachWeight(d, 100, router, undefined)) return;
  promote(d);
  d.pointServices([canary.stableService, canary.canaryService], status.stableRS!);
  route(d, 0);
  d.scaleDownOthers([newRS], scaleDownDelay);
  setWeights(d, 0);
}

/** Scales for `weight`; true once the canary's pods are available and traffic is there. */
function reachWeight(
  d: Decision,
  weight: number,
  router: boolean,
  canaryScale: CanaryStep['setCanaryScale'] | undefined,
): boolean {
  const { replicas, newRS } = d;
  const stableRS = d.stableRS!;
  const target = canaryCounts(replicas, weight, router);
  if (canaryScale?.replicas !== undefined) target.canary = canaryScale.replicas;
  else if (canaryScale?.weight !== undefined)
    target.canary = Math.ceil((replicas * canaryScale.weight) / 100);
  if (router) {
    // The router splits traffic: the stable keeps all its pods, the canary gets its share.
    d.scale(newRS, target.canary);
    d.scale(stableRS, replicas);
  } else {
    // Pods move like a rolling update (Argo's basic canary): at most replicas + maxSurge pods in
    // all, and at least replicas - maxUnavailable of them available, until the weight is reached.
    const canary = d.ro.spec.strategy!.canary!;
    let surge = resolveIntOrPercent(canary.maxSurge, replicas, true, '25%');
    const unavailable = resolveIntOrPercent(canary.maxUnavailable, replicas, false, '25%');
    if (surge === 0 && unavailable === 0) surge = 1;
    const stableNow = stableRS.spec.replicas ?? 0;
    const canaryNow = newRS.spec.replicas ?? 0;
    const canaryWant = Math.min(target.canary, Math.max(canaryNow, replicas + surge - stableNow));
    d.scale(newRS, canaryWant);
    // Counted against spec too: a status not yet caught up with a scale-down still lists the
    // pods being removed, and counting those would let the next pods go too early.
    const available =
      Math.min(newRS.status?.availableReplicas ?? 0, canaryWant) +
      Math.min(stableRS.status?.availableReplicas ?? 0, stableNow);
    // Stable pods that can go without dropping below replicas - maxUnavailable available.
    const removable = Math.max(0, available - (replicas - unavailable));
    const stableWant = Math.max(target.stable, Math.min(stableNow, stableNow - removable));
    // Never grow the stable here unless the weight went down (setWeight to a lower value).
    d.scale(stableRS, stableNow > target.stable ? stableWant : target.stable);
  }
  const ready =
    (newRS.status?.availableReplicas ?? 0) >= target.canary &&
    (stableRS.spec.replicas ?? 0) === target.stable;
  const current = d.status.canary?.weights?.canary.weight ?? 0;
  if (router) {
    // Traffic follows only pods that are up.
    const max = d.ro.spec.strategy!.canary!.trafficRouting?.maxTrafficWeight ?? 100;
    route(d, ready ? Math.min(weight, max) : current);
    setWeights(d, ready ? weight : current);
  } else {
    setWeights(d, replicas ? Math.round(((newRS.status?.availableReplicas ?? 0) / replicas) * 100) : 0);
  }
  return ready;
}

function setWeights(d: Decision, canaryWeight: number): void {
  const canary = d.ro.spec.strategy?.canary;
  if (!canary) return;
  const w = Math.min(100, Math.max(0, canaryWeight));
  d.status.canary = {
    ...d.status.canary,
    weights: {
      canary: {
        weight: w,
        podTemplateHash: d.status.currentPodHash!,
        ...(canary.canaryService ? { serviceName: canary.canaryService } : {}),
      },
      stable: {
        weight: 100 - w,
        podTemplateHash: d.status.stableRS!,
        ...(canary.stableService ? { serviceName: canary.stableService } : {}),
      },
    },
  };
}

/** The nginx canary Ingresses at `weight` (the last call of a decision wins). */
function route(d: Decision, weight: number): void {
  const canary = d.ro.spec.strategy?.canary;
  if (!canary?.trafficRouting?.nginx) return;
  d.setIngresses(planCanaryIngresses(d.ro, canary, d.observed.ingresses, weight));
}

function backgroundAnalysis(d: Decision): void {
  const analysis = d.ro.spec.strategy!.canary!.analysis;
  if (!analysis?.templates?.length) return;
  if ((d.status.currentStepIndex ?? 0) < (analysis.startingStep ?? 0)) return;
  const outcome = d.analysis(
    `${d.ro.metadata.name}-${d.status.currentPodHash}-background`,
    analysis,
    d.status.canary?.currentBackgroundAnalysisRunStatus?.name,
  );
  d.status.canary = { ...d.status.canary, currentBackgroundAnalysisRunStatus: runStatus(outcome) };
  if (failed(outcome)) {
    abort(
      d,
      `background analysis ${outcome.name} ${outcome.phase.toLowerCase()}${outcome.message ? `: ${outcome.message}` : ''}`,
    );
  }
}
