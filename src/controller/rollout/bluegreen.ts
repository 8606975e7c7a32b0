// The blue/green strategy's decision (Argo Rollouts' blueGreen): the new revision comes up behind
// the preview Service, pre-promotion analysis and the promotion pause gate it, the active Service
// switches once it is fully available, post-promotion analysis may still send it back, and the old
// revision keeps its pods for scaleDownDelaySeconds. Pure: it fills in the Decision.
import type { Decision } from './plan.ts';
import { checkProgressDeadline } from './status.ts';
import { abort, failed, holdPause, promote, runStatus, stopAnalysesOnAbort } from './steps.ts';
import { DEFAULT_SCALE_DOWN_DELAY, POD_TEMPLATE_HASH } from './types.ts';

export function decideBlueGreen(d: Decision): void {
  const { ro, status, replicas, newRS } = d;
  const bg = ro.spec.strategy!.blueGreen!;
  const stableHash = status.stableRS!;
  const updating = status.currentPodHash !== stableHash;
  const scaleDownDelay = bg.scaleDownDelaySeconds ?? DEFAULT_SCALE_DOWN_DELAY;
  status.blueGreen = { ...status.blueGreen };
  delete status.currentStepIndex; // a canary field (an older version of ours wrote 0 here)

  const stableRS = d.stableRS;
  if (!updating || !stableRS) {
    d.scale(newRS, replicas);
    d.pointServices([bg.activeService, bg.previewService], stableHash);
    status.blueGreen.activeSelector = stableHash;
    status.blueGreen.previewSelector = stableHash;
    d.scaleDownOthers([newRS], scaleDownDelay);
    return;
  }
  // A revision overtaken by a newer one goes: at once if it only served the preview, after the
  // scale-down delay if the active Service was already switched to it (clients hold connections).
  const active = d.observed.services[bg.activeService]?.spec?.selector?.[POD_TEMPLATE_HASH];
  for (const rs of d.rss) {
    if (rs === newRS || rs === stableRS) continue;
    d.scaleDownAfter(rs, d.hashOf(rs) === active ? scaleDownDelay : 0);
  }

  if (status.abort) {
    stopAnalysesOnAbort(d);
    d.pointServices([bg.activeService], stableHash);
    status.blueGreen.activeSelector = stableHash;
    d.scale(stableRS, replicas);
    // 0 means: keep the aborted preview's pods for inspection.
    const delay = bg.abortScaleDownDelaySeconds ?? DEFAULT_SCALE_DOWN_DELAY;
    if (delay > 0) d.scaleDownAfter(newRS, delay);
    return;
  }

  // The active Service keeps serving the stable revision until promotion.
  d.scale(stableRS, replicas);
  const switched = status.blueGreen.activeSelector === status.currentPodHash;
  if (!switched) {
    d.pointServices([bg.activeService], stableHash);
    status.blueGreen.activeSelector = stableHash;
  }
  d.pointServices([bg.previewService], status.currentPodHash!);
  status.blueGreen.previewSelector = status.currentPodHash!;
  if (ro.spec.paused) return;

  if (!switched) {
    const previewCount = bg.previewReplicaCount ?? replicas;
    const promoting = status.blueGreen.scaleUpPreviewCheckPoint === true;
    const want = promoting ? replicas : Math.min(previewCount, replicas);
    d.scale(newRS, want);
    if ((newRS.status?.availableReplicas ?? 0) < want) return checkProgressDeadline(d);
    if (!promoting) {
      if (bg.prePromotionAnalysis?.templates?.length && !status.promoteFull) {
        const outcome = d.analysis(
          `${ro.metadata.name}-${status.currentPodHash}-pre`,
          bg.prePromotionAnalysis,
          status.blueGreen.prePromotionAnalysisRunStatus?.name,
        );
        status.blueGreen.prePromotionAnalysisRunStatus = runStatus(outcome);
        if (failed(outcome)) {
          abort(d, `pre-promotion analysis ${outcome.name} ${outcome.phase.toLowerCase()}`);
          return decideBlueGreen(d);
        }
        if (outcome.phase === 'Inconclusive') {
          if (!holdPause(d, 'InconclusiveAnalysisRun', undefined)) return;
        } else if (outcome.phase !== 'Successful') return;
      }
      if (!status.promoteFull) {
        const manual = bg.autoPromotionEnabled === false;
        const seconds = bg.autoPromotionSeconds;
        if (manual || seconds !== undefined) {
          if (!holdPause(d, 'BlueGreenPause', manual ? undefined : seconds! * 1000)) return;
        }
      }
      status.blueGreen.scaleUpPreviewCheckPoint = true;
      if (want < replicas) {
        d.scale(newRS, replicas);
        return;
      }
    }
    // Switch only once the new revision is fully available.
    d.pointServices([bg.activeService], status.currentPodHash!);
    status.blueGreen.activeSelector = status.currentPodHash!;
    d.event(
      'Normal',
      'SwitchActiveService',
      `active service ${bg.activeService} now selects ${status.currentPodHash}`,
    );
  }
  d.scale(newRS, replicas);
  if (bg.postPromotionAnalysis?.templates?.length && !status.promoteFull) {
    const outcome = d.analysis(
      `${ro.metadata.name}-${status.currentPodHash}-post`,
      bg.postPromotionAnalysis,
      status.blueGreen.postPromotionAnalysisRunStatus?.name,
    );
    status.blueGreen.postPromotionAnalysisRunStatus = runStatus(outcome);
    if (failed(outcome)) {
      abort(d, `post-promotion analysis ${outcome.name} ${outcome.phase.toLowerCase()}`);
      return decideBlueGreen(d);
    }
    if (outcome.phase !== 'Successful') return;
  }
  promote(d);
  // The old revision keeps its pods for scaleDownDelaySeconds: clients may still hold connections.
  d.scaleDownOthers([newRS], scaleDownDelay);
}
