// The Rollout controller (Argo Rollouts' Rollout: canary and blue/green, with analysis), laid out
// as gather -> decide -> act:
//
//   controller.ts   wiring: the informers it reads and the watches that map back to Rollouts
//   reconciler.ts   one reconcile: gather, decide, act
//   gather.ts       GATHER  everything a decision reads, from caches only (RolloutCache)
//   decide.ts       DECIDE  pure, no API and no clock of its own; it validates the spec (spec.ts),
//     canary.ts               then runs the strategy, which fills in a Decision (plan.ts):
//     bluegreen.ts            desired replicas, selectors, ingress weights, runs to start/stop,
//     steps.ts                the status (status.ts) and when to look again; shared steps are
//     replicasets.ts          pauses, analysis, abort and promotion, and ReplicaSet history
//     replicas.ts             the replica arithmetic and pod-template hash
//   act.ts          ACT     the plan applied in a safe order, status last; nginx.ts and
//                           analysis.ts are its Ingress and AnalysisRun writes
//   types.ts        the resource, with Argo's field names
//
// The decision is unit-tested on a model cluster with a fake clock (test/unit/controller/rollout/);
// the controller as a whole on the real control plane (test/integration/rollout*.test.ts).
export * from './types.ts';
export {
  setupRolloutController,
  rolloutInformers,
  informerCache,
  type RolloutInformers,
} from './controller.ts';
export { RolloutReconciler, type RolloutReconcilerOptions } from './reconciler.ts';
export { decide } from './decide.ts';
export { gather, type RolloutCache } from './gather.ts';
export type { Observed, Plan } from './plan.ts';
