// Wires the Rollout reconciler into a Manager: Rollouts (spec changes and status edits by the CLI:
// promote, abort, retry), their ReplicaSets (pods becoming available move a rollout on), and the
// analysis runs they start.
import type { KubeObject } from '../../core/kube/objects.ts';
import { ANALYSIS_RUN } from '../analysis/types.ts';
import { enqueueOwner, type Predicate } from '../runtime/controller.ts';
import { EventRecorder } from '../runtime/events.ts';
import type { Manager } from '../runtime/manager.ts';
import { ClusterAnalysisDriver } from './analysis.ts';
import { RolloutReconciler, type AnalysisDriver } from './reconciler.ts';
import { DEPLOYMENTS, REPLICASETS, ROLLOUT, type ReplicaSet, type Rollout } from './types.ts';

export interface RolloutControllerOptions {
  namespace?: string;
  maxConcurrentReconciles?: number;
  analysis?: AnalysisDriver;
}

/** Reconcile on anything but our own status writes' echo (resourceVersion-only changes are cheap anyway). */
function rolloutChanged(): Predicate<Rollout> {
  return {
    update: (oldRo, newRo, info) =>
      info.resync ||
      oldRo.metadata.generation !== newRo.metadata.generation ||
      // The CLI edits status (promote, abort, retry): those must wake the controller.
      JSON.stringify(oldRo.status?.pauseConditions) !== JSON.stringify(newRo.status?.pauseConditions) ||
      oldRo.status?.abort !== newRo.status?.abort ||
      oldRo.status?.promoteFull !== newRo.status?.promoteFull ||
      oldRo.status?.currentStepIndex !== newRo.status?.currentStepIndex,
  };
}

export function setupRolloutController(
  manager: Manager,
  options: RolloutControllerOptions = {},
): RolloutReconciler {
  const rollouts = manager.informer<Rollout & KubeObject>(ROLLOUT, { namespace: options.namespace ?? '' });
  const replicaSets = manager.informer<ReplicaSet & KubeObject>(REPLICASETS, {
    namespace: options.namespace ?? '',
  });
  const events = new EventRecorder({
    client: manager.client,
    reportingController: 'kube-actions.dev/rollout-controller',
    reportingInstance: manager.identity ?? 'kube-actions-controller',
    logger: manager.logger,
  });
  const reconciler = new RolloutReconciler({
    client: manager.client,
    // Status writes are guarded by resourceVersion: a stale cache only costs a retry.
    getRollout: (req) => Promise.resolve(rollouts.get(req.namespace, req.name)),
    listReplicaSets: (namespace) => Promise.resolve(replicaSets.list(namespace)),
    analysis: options.analysis ?? new ClusterAnalysisDriver(manager.client),
    events,
    logger: manager.logger.child({ controller: 'rollout' }),
  });
  const controller = manager.controller({
    name: 'rollout',
    reconciler: { reconcile: (req) => reconciler.reconcile(req) },
    maxConcurrentReconciles: options.maxConcurrentReconciles ?? 10,
  });
  controller.watch(rollouts, undefined, rolloutChanged());
  controller.watch(replicaSets, enqueueOwner({ apiVersion: ROLLOUT.apiVersion, kind: 'Rollout' }));
  // A Deployment a workloadRef points at: its template changes start a rollout.
  const deployments = manager.informer<KubeObject>(DEPLOYMENTS, { namespace: options.namespace ?? '' });
  controller.watch(deployments, (dep) =>
    rollouts
      .list(dep.metadata?.namespace)
      .filter(
        (ro) =>
          ro.spec.workloadRef?.name === dep.metadata?.name && ro.spec.workloadRef?.kind === 'Deployment',
      )
      .map((ro) => ({ namespace: ro.metadata.namespace, name: ro.metadata.name })),
  );
  // A run changing phase moves its rollout on (status-only updates: no generation filter here).
  const runs = manager.informer<KubeObject>(ANALYSIS_RUN, { namespace: options.namespace ?? '' });
  controller.watch(runs, enqueueOwner({ apiVersion: ROLLOUT.apiVersion, kind: 'Rollout' }));
  return reconciler;
}
