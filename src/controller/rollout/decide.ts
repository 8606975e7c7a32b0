// The decide step of a Rollout reconcile: from what was gathered and the time, what to write.
// Pure and synchronous (no API, no clock of its own), so every transition is unit-tested with a
// table and a fake clock (test/unit/controller/rollout/).
import { stableJSON } from '../../core/json.ts';
import { decideBlueGreen } from './bluegreen.ts';
import { decideCanary } from './canary.ts';
import { Decision, type Observed, type Plan } from './plan.ts';
import { cleanupOldReplicaSets, newReplicaSet, scaleDownWorkload } from './replicasets.ts';
import { podTemplateHash } from './replicas.ts';
import { missingReferences, resolveWorkload, validateSpec } from './spec.ts';
import { markInvalid, noteProgress, removeCondition, summarize } from './status.ts';

export function decide(observed: Observed, now: Date): Plan {
  const previous = observed.rollout.status ?? {};
  const { rollout: ro, problems: workloadProblems } = resolveWorkload(observed);
  let invalid = workloadProblems.length ? workloadProblems : validateSpec(ro);
  if (invalid.length === 0) invalid = missingReferences(ro, observed);
  if (invalid.length === 0) invalid = observed.invalidAnalysis ?? [];
  const d = new Decision(observed, ro, now);
  const { status } = d;
  if (invalid.length) {
    // Nothing is scaled or switched on a spec we cannot follow; the condition clears itself when
    // the spec is fixed or the missing reference appears (both wake the rollout).
    markInvalid(status, now, invalid, ro.metadata.generation);
    return d.plan(stableJSON(previous) !== stableJSON(status));
  }
  removeCondition(status, 'InvalidSpec');

  const hash = podTemplateHash(ro.spec.template!);
  const firstRollout = !status.stableRS;
  d.newRS = d.byHash(hash) ?? d.create(newReplicaSet(ro, hash, d.rss, firstRollout ? d.replicas : 0));
  if (status.currentPodHash !== hash) startRevision(d, hash);
  if (firstRollout) status.stableRS = hash;
  d.stableRS = d.byHash(status.stableRS);
  noteProgress(d);

  if (ro.spec.strategy?.blueGreen) decideBlueGreen(d);
  else decideCanary(d);

  cleanupOldReplicaSets(d);
  summarize(d);
  scaleDownWorkload(d);
  return d.plan(stableJSON(previous) !== stableJSON(status));
}

/**
 * A new revision: its steps start from the beginning. (Back to the stable revision is an
 * immediate "rollback": nothing to step through.)
 */
function startRevision(d: Decision, hash: string): void {
  const { status, now } = d;
  status.currentPodHash = hash;
  // Only a canary with steps has a step index (Argo leaves it unset otherwise).
  if (d.ro.spec.strategy?.canary?.steps?.length) status.currentStepIndex = 0;
  else delete status.currentStepIndex;
  delete status.pauseConditions;
  delete status.controllerPause;
  delete status.promoteFull;
  delete status.abort;
  delete status.abortedAt;
  status.progressStartedAt = now.toISOString();
  if (status.blueGreen) {
    delete status.blueGreen.scaleUpPreviewCheckPoint;
    delete status.blueGreen.prePromotionAnalysisRunStatus;
    delete status.blueGreen.postPromotionAnalysisRunStatus;
  }
  if (status.canary) {
    delete status.canary.currentStepAnalysisRunStatus;
    delete status.canary.currentBackgroundAnalysisRunStatus;
  }
  removeCondition(status, 'Progressing');
}
