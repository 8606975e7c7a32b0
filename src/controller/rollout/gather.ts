// The gather step of a Rollout reconcile: everything the decision reads, from caches only (the
// controller's informers, with this controller's own writes written back so a copy older than
// our last write is never read). Also the reverse index the controller's watches use: which
// Rollouts a Service, Ingress, template, Secret or Deployment matters to.
import type { ResourceRef } from '../../core/kube/objects.ts';
import { templateTree } from '../analysis/templates.ts';
import type { AnalysisRun, AnalysisTemplate, AnalysisTemplateRef } from '../analysis/types.ts';
import { analysisProblem } from './analysis.ts';
import { canaryIngressName, stableIngressNames, type Ingress } from './nginx.ts';
import type { Observed, ObservedService } from './plan.ts';
import { analysesOf, referencedNames } from './spec.ts';
import type { Deployment, ReplicaSet, Rollout } from './types.ts';
import { compareStrings } from '../../core/order.ts';

/** Read access to the caches a Rollout reconcile needs (informers in the controller, maps in tests). */
export interface RolloutCache {
  rollout(namespace: string, name: string): Rollout | undefined;
  replicaSets(namespace: string): ReplicaSet[];
  service(namespace: string, name: string): ObservedService | undefined;
  ingress(namespace: string, name: string): Ingress | undefined;
  deployment(namespace: string, name: string): Deployment | undefined;
  analysisRuns(namespace: string): AnalysisRun[];
  analysisTemplate(namespace: string, name: string): AnalysisTemplate | undefined;
  clusterAnalysisTemplate(name: string): AnalysisTemplate | undefined;
  /** Whether a Secret exists (metadata only: the controller never holds Secret values in a cache). */
  secretExists(namespace: string, name: string): boolean;
  /** Records an object this controller just wrote, so the next read is never older. */
  written(resource: ResourceRef, obj: object): void;
}

const MAX_TEMPLATE_DEPTH = 10;

export function gather(cache: RolloutCache, namespace: string, name: string): Observed | undefined {
  const rollout = cache.rollout(namespace, name);
  if (!rollout || (rollout.metadata as { deletionTimestamp?: string }).deletionTimestamp) return undefined;
  const { services, ingresses } = referencedNames(rollout);
  const canary = rollout.spec.strategy?.canary;
  const ingressNames = [
    ...ingresses,
    ...(canary ? stableIngressNames(canary).map((stable) => canaryIngressName(name, stable)) : []),
  ];
  const ref = rollout.spec.workloadRef;
  const runs = cache
    .analysisRuns(namespace)
    .map((run) => ({
      name: run.metadata.name!,
      ours: Boolean(
        run.metadata.ownerReferences?.some((o) => o.controller && o.uid === rollout.metadata.uid),
      ),
      ...(run.status?.phase ? { phase: run.status.phase } : {}),
      ...(run.status?.message ? { message: run.status.message } : {}),
      terminating: run.spec?.terminate === true,
      created: typeof run.metadata.creationTimestamp === 'string' ? run.metadata.creationTimestamp : '',
    }))
    .sort((a, b) => compareStrings(a.created, b.created) || compareStrings(a.name, b.name))
    .map(({ created: _created, ...run }) => run);
  const deployment = ref?.kind === 'Deployment' ? cache.deployment(namespace, ref.name) : undefined;
  const missing = missingAnalysisReferences(cache, rollout);
  return {
    rollout,
    replicaSets: cache
      .replicaSets(namespace)
      .filter((rs) =>
        rs.metadata.ownerReferences?.some((o) => o.uid === rollout.metadata.uid && o.controller),
      ),
    services: Object.fromEntries(services.map((s) => [s, cache.service(namespace, s)])),
    ingresses: Object.fromEntries(ingressNames.map((i) => [i, cache.ingress(namespace, i)])),
    ...(deployment ? { deployment } : {}),
    runs,
    missing,
    // Checked once every template exists: a missing one is already the reason.
    ...(missing.length === 0 ? { invalidAnalysis: invalidAnalysis(cache, rollout) } : {}),
  };
}

/** The analyses whose runs could not start (or measure), with why (see analysisProblem). */
function invalidAnalysis(cache: RolloutCache, ro: Rollout): string[] {
  const ns = ro.metadata.namespace;
  const lookup = (ref: AnalysisTemplateRef) =>
    ref.clusterScope
      ? cache.clusterAnalysisTemplate(ref.templateName)
      : cache.analysisTemplate(ns, ref.templateName);
  const problems: string[] = [];
  for (const analysis of analysesOf(ro)) {
    const refs = analysis.templates ?? [];
    let problem: string | undefined;
    try {
      problem = analysisProblem(ro, analysis, templateTree(ns, refs, lookup));
    } catch (err) {
      problem = (err as Error).message;
    }
    if (problem) problems.push(`analysis of ${refs.map((r) => r.templateName).join(', ')}: ${problem}`);
  }
  return [...new Set(problems)];
}

/**
 * Templates (nested ones included) and the Secrets their args read that do not exist. A run
 * started without them would only fail; waiting as InvalidSpec lets them be created afterwards.
 */
function missingAnalysisReferences(cache: RolloutCache, ro: Rollout): string[] {
  const ns = ro.metadata.namespace;
  const missing = new Set<string>();
  const seen = new Set<string>();
  const visit = (ref: AnalysisTemplateRef, depth: number): void => {
    const id = `${ref.clusterScope ? 'cluster' : ns}/${ref.templateName}`;
    if (seen.has(id) || depth > MAX_TEMPLATE_DEPTH) return;
    seen.add(id);
    const template = ref.clusterScope
      ? cache.clusterAnalysisTemplate(ref.templateName)
      : cache.analysisTemplate(ns, ref.templateName);
    if (!template) {
      missing.add(
        ref.clusterScope
          ? `clusteranalysistemplate "${ref.templateName}" does not exist`
          : `analysistemplate "${ref.templateName}" does not exist in namespace ${ns}`,
      );
      return;
    }
    for (const arg of template.spec?.args ?? []) {
      const secret = (arg.valueFrom as { secretKeyRef?: { name?: string } } | undefined)?.secretKeyRef?.name;
      if (secret && !cache.secretExists(ns, secret))
        missing.add(
          `secret "${secret}" (arg ${arg.name} of ${template.metadata.name}) does not exist in namespace ${ns}`,
        );
    }
    for (const inner of template.spec?.templates ?? []) visit(inner, depth + 1);
  };
  for (const analysis of analysesOf(ro)) for (const ref of analysis.templates ?? []) visit(ref, 0);
  return [...missing];
}

/** What a Rollout refers to by name, for mapping an event on that object back to the Rollout. */
export interface RolloutReferences {
  services: string[];
  ingresses: string[];
  deployment?: string;
  templates: string[];
  clusterTemplates: string[];
}

export function referencesOf(ro: Rollout): RolloutReferences {
  const { services, ingresses } = referencedNames(ro);
  const refs = analysesOf(ro).flatMap((a) => a.templates ?? []);
  return {
    services,
    ingresses,
    ...(ro.spec.workloadRef?.kind === 'Deployment' ? { deployment: ro.spec.workloadRef.name } : {}),
    templates: refs.filter((r) => !r.clusterScope).map((r) => r.templateName),
    clusterTemplates: refs.filter((r) => r.clusterScope).map((r) => r.templateName),
  };
}
