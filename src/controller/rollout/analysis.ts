// The Rollout controller's side of analysis, as act.ts runs it: it starts the AnalysisRuns the
// decision asked for (owned by the Rollout, so they go with it), under the name the decision chose
// and recorded in status, and asks runs to stop. Reading their phase is gather's job (a cache).
import type { KubeClient } from '../../core/kube/client.ts';
import { dryRunMetrics, retentionLimits, validateMetric } from '../analysis/analysis.ts';
import { publicArgValues, resolveMetric } from '../analysis/args.ts';
import { analysisRunSpec, createAnalysisRun, terminateAnalysisRun } from '../analysis/templates.ts';
import type { AnalysisRun, AnalysisTemplate, Argument } from '../analysis/types.ts';
import type { RunToCreate } from './plan.ts';
import { POD_TEMPLATE_HASH, ROLLOUT, type Rollout, type RolloutAnalysis } from './types.ts';

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

/**
 * Starts a run the decision planned. `ro` carries the decided status: args such as
 * podTemplateHashValue: Latest must name the revision being decided, not the one read.
 */
export function startRun(client: KubeClient, ro: Rollout, run: RunToCreate): Promise<AnalysisRun> {
  return createAnalysisRun(client, {
    namespace: ro.metadata.namespace,
    name: run.name,
    exactName: true,
    owner: {
      apiVersion: ro.apiVersion || ROLLOUT.apiVersion,
      kind: 'Rollout',
      name: ro.metadata.name,
      uid: ro.metadata.uid,
      controller: true,
      blockOwnerDeletion: true,
    },
    templates: run.analysis.templates ?? [],
    args: rolloutArgs(ro, run.analysis),
    labels: { [POD_TEMPLATE_HASH]: run.podHash, 'kube-actions.dev/rollout': ro.metadata.name },
    fieldRefSource: ro,
  });
}

export function stopRun(client: KubeClient, ro: Rollout, name: string): Promise<void> {
  return terminateAnalysisRun(client, ro.metadata.namespace, name);
}

/**
 * Why a run of `analysis` from `templates` could not start, or could not measure, if it could not
 * (Argo's ValidateAnalysisTemplatesWithType): an argument nothing supplies, two metrics of one
 * name, a metric the analysis controller would refuse (an interval of 0s, a negative count). The
 * rollout is then InvalidSpec before anything is scaled, rather than starting the new revision and
 * failing to create the run at every retry, or aborting once the run ends in Error.
 *
 * What is known only when the run starts stays unchecked: fieldRef arguments (read from the
 * rollout then) count as supplied, and a metric using one, or a Secret's value, is checked by the
 * run itself.
 */
export function analysisProblem(
  ro: Rollout,
  analysis: RolloutAnalysis,
  templates: AnalysisTemplate[],
): string | undefined {
  const late = new Set<string>();
  const deferFieldRefs = (args: Argument[] | undefined) =>
    args?.map((arg) => {
      if (arg.value !== undefined || !arg.valueFrom?.fieldRef) return arg;
      late.add(arg.name);
      return { name: arg.name, value: '' };
    });
  try {
    const spec = analysisRunSpec(
      templates.map((t) => ({
        spec: { ...t.spec, ...(t.spec?.args ? { args: deferFieldRefs(t.spec.args) } : {}) },
      })),
      { args: deferFieldRefs(rolloutArgs(ro, analysis)) },
    );
    for (const arg of spec.args ?? []) if (arg.valueFrom?.secretKeyRef) late.add(arg.name);
    const values = publicArgValues(spec.args);
    const usesLate = (metric: unknown) =>
      [...JSON.stringify(metric).matchAll(/\{\{\s*args\.([^}\s]+)\s*\}\}/g)].some((m) => late.has(m[1]!));
    const metrics = spec.metrics.map((m) => (usesLate(m) ? m : resolveMetric(m, values)));
    for (const [i, metric] of metrics.entries()) {
      const problem = usesLate(metric) ? undefined : validateMetric(metric);
      if (problem) return `metrics[${i}] (${metric.name}): ${problem}`;
    }
    dryRunMetrics(spec.dryRun, metrics);
    retentionLimits(spec.measurementRetention, metrics);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
