// The Rollout controller's side of analysis: it starts AnalysisRuns from the rollout's templates
// (owned by the Rollout, so they go with it) and reads their phase. A run's name is remembered in
// the rollout's status, so a restarted controller reads the same run instead of starting another.
import type { KubeClient } from '../../core/kube/client.ts';
import { createAnalysisRun, getAnalysisRun, terminateAnalysisRun } from '../analysis/templates.ts';
import type { Argument } from '../analysis/types.ts';
import type { AnalysisDriver, AnalysisOutcome } from './reconciler.ts';
import { ROLLOUT, type Rollout, type RolloutAnalysis } from './types.ts';

/** Argo's `valueFrom.podTemplateHashValue: Stable | Latest` resolved against the rollout's status. */
export function rolloutArgs(ro: Rollout, analysis: RolloutAnalysis): Argument[] {
  return (analysis.args ?? []).map((arg) => {
    const from = arg.valueFrom as
      { podTemplateHashValue?: string; fieldRef?: { fieldPath: string } } | undefined;
    if (from?.podTemplateHashValue) {
      const hash = from.podTemplateHashValue === 'Stable' ? ro.status?.stableRS : ro.status?.currentPodHash;
      return { name: arg.name, value: hash ?? '' };
    }
    return {
      name: arg.name,
      ...(arg.value !== undefined ? { value: arg.value } : {}),
      ...(from ? { valueFrom: from } : {}),
    };
  });
}

export class ClusterAnalysisDriver implements AnalysisDriver {
  private readonly client: KubeClient;

  constructor(client: KubeClient) {
    this.client = client;
  }

  async ensure(
    ro: Rollout,
    name: string,
    analysis: RolloutAnalysis,
    podHash: string,
    recorded?: string,
  ): Promise<AnalysisOutcome> {
    if (recorded) {
      // The run this slot started: its phase is the answer, Failed included (a retry clears the
      // recorded runs from status, so a new one starts then).
      const run = await getAnalysisRun(this.client, ro.metadata.namespace, recorded);
      if (run) {
        return {
          name: recorded,
          phase: run.status?.phase ?? 'Pending',
          ...(run.status?.message ? { message: run.status.message } : {}),
        };
      }
    }
    const run = await createAnalysisRun(this.client, {
      namespace: ro.metadata.namespace,
      name,
      owner: {
        apiVersion: ro.apiVersion || ROLLOUT.apiVersion,
        kind: 'Rollout',
        name: ro.metadata.name,
        uid: ro.metadata.uid,
        controller: true,
        blockOwnerDeletion: true,
      },
      templates: analysis.templates ?? [],
      args: rolloutArgs(ro, analysis),
      labels: { 'rollouts-pod-template-hash': podHash, 'kube-actions.dev/rollout': ro.metadata.name },
      fieldRefSource: ro,
    });
    return { name: run.metadata.name ?? name, phase: run.status?.phase ?? 'Pending' };
  }

  async terminate(ro: Rollout, name: string): Promise<void> {
    await terminateAnalysisRun(this.client, ro.metadata.namespace, name);
  }
}
