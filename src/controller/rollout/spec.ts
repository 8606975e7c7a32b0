// What a Rollout's spec must be before the controller acts on it (Argo's InvalidSpec): checked
// in pure code against the spec and the gathered references, so a bad spec is a condition with a
// message, never an exception retried with backoff, and a reference created later clears it.
import type { Observed } from './plan.ts';
import { resolveIntOrPercent, validateSteps } from './replicas.ts';
import type { Rollout, RolloutAnalysis } from './types.ts';

/** The rollout with the template and selector of its workloadRef's Deployment filled in. */
export function resolveWorkload(observed: Observed): { rollout: Rollout; problems: string[] } {
  const ro = observed.rollout;
  const ref = ro.spec.workloadRef;
  if (!ref) return { rollout: ro, problems: [] };
  if (ro.spec.template)
    return { rollout: ro, problems: ['set either spec.template or spec.workloadRef, not both'] };
  if (ref.kind !== 'Deployment' || (ref.apiVersion ?? 'apps/v1') !== 'apps/v1') {
    return {
      rollout: ro,
      problems: [`spec.workloadRef must reference an apps/v1 Deployment, got ${ref.apiVersion} ${ref.kind}`],
    };
  }
  const scaleDown = ref.scaleDown ?? 'never';
  if (!['never', 'onsuccess', 'progressively'].includes(scaleDown)) {
    return {
      rollout: ro,
      problems: [`spec.workloadRef.scaleDown must be never, onsuccess or progressively, got "${scaleDown}"`],
    };
  }
  const deployment = observed.deployment;
  if (!deployment) {
    return {
      rollout: ro,
      problems: [
        `deployment "${ref.name}" (spec.workloadRef) does not exist in namespace ${ro.metadata.namespace}`,
      ],
    };
  }
  const spec = {
    ...ro.spec,
    template: deployment.spec.template,
    selector: ro.spec.selector?.matchLabels ? ro.spec.selector : deployment.spec.selector,
  };
  return { rollout: { ...ro, spec }, problems: [] };
}

const isCount = (n: unknown): boolean => n === undefined || (Number.isInteger(n) && (n as number) >= 0);

/** Problems with the spec itself (nothing gathered needed). */
export function validateSpec(ro: Rollout): string[] {
  const problems: string[] = [];
  const { canary, blueGreen } = ro.spec.strategy ?? {};
  if (!ro.spec.template) problems.push('spec.template (or spec.workloadRef) is required');
  if (!canary === !blueGreen) problems.push('spec.strategy must set exactly one of canary or blueGreen');
  const matchLabels = ro.spec.selector?.matchLabels ?? {};
  if (Object.keys(matchLabels).length === 0) problems.push('spec.selector.matchLabels must select the pods');
  const labels = ro.spec.template?.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(matchLabels)) {
    if (labels[k] !== v)
      problems.push(`spec.selector.matchLabels ${k}=${v} does not match spec.template.metadata.labels`);
  }
  for (const field of ['replicas', 'minReadySeconds', 'revisionHistoryLimit'] as const) {
    if (!isCount(ro.spec[field])) problems.push(`spec.${field} must be a non-negative integer`);
  }
  const deadline = ro.spec.progressDeadlineSeconds;
  if (deadline !== undefined && !(Number.isInteger(deadline) && deadline > 0))
    problems.push('spec.progressDeadlineSeconds must be a positive integer');
  if (blueGreen) {
    if (!blueGreen.activeService) problems.push('strategy.blueGreen.activeService is required');
    if (blueGreen.previewService && blueGreen.previewService === blueGreen.activeService)
      problems.push('strategy.blueGreen.previewService must differ from activeService');
    for (const field of [
      'autoPromotionSeconds',
      'previewReplicaCount',
      'scaleDownDelaySeconds',
      'abortScaleDownDelaySeconds',
    ] as const) {
      if (!isCount(blueGreen[field]))
        problems.push(`strategy.blueGreen.${field} must be a non-negative integer`);
    }
  }
  if (canary) {
    const router = canary.trafficRouting;
    const others = Object.keys(router ?? {}).filter((k) => k !== 'nginx' && k !== 'maxTrafficWeight');
    if (others.length)
      problems.push(`strategy.canary.trafficRouting: only nginx is supported (got ${others.join(', ')})`);
    if (router?.nginx) {
      if (!canary.canaryService || !canary.stableService)
        problems.push('strategy.canary.trafficRouting needs canaryService and stableService');
      if (!router.nginx.stableIngress)
        problems.push('strategy.canary.trafficRouting.nginx.stableIngress is required');
    }
    if (canary.canaryService && canary.canaryService === canary.stableService)
      problems.push('strategy.canary.canaryService must differ from stableService');
    // Resolved here, against any replica count, so a bad value is a message and not a throw later.
    for (const field of ['maxSurge', 'maxUnavailable'] as const) {
      try {
        const n = resolveIntOrPercent(canary[field], 100, field === 'maxSurge', '25%');
        if (n < 0) throw new Error(`invalid value "${canary[field]}": must not be negative`);
      } catch (err) {
        problems.push(`strategy.canary.${field}: ${(err as Error).message}`);
      }
    }
    for (const field of ['scaleDownDelaySeconds', 'abortScaleDownDelaySeconds'] as const) {
      if (!isCount(canary[field])) problems.push(`strategy.canary.${field} must be a non-negative integer`);
    }
    if (canary.steps !== undefined && !Array.isArray(canary.steps))
      problems.push('strategy.canary.steps must be a list');
    else problems.push(...validateSteps(canary.steps ?? [], Boolean(router?.nginx)));
  }
  return problems;
}

/** Every analysis the spec may start, for reference checks. */
export function analysesOf(ro: Rollout): RolloutAnalysis[] {
  const { canary, blueGreen } = ro.spec.strategy ?? {};
  return [
    canary?.analysis,
    ...(Array.isArray(canary?.steps) ? canary.steps.map((s) => s.analysis) : []),
    blueGreen?.prePromotionAnalysis,
    blueGreen?.postPromotionAnalysis,
  ].filter((a): a is RolloutAnalysis => Boolean(a?.templates?.length));
}

/** The Services and Ingresses the strategy names. */
export function referencedNames(ro: Rollout): { services: string[]; ingresses: string[] } {
  const { canary, blueGreen } = ro.spec.strategy ?? {};
  const services = [
    canary?.stableService,
    canary?.canaryService,
    blueGreen?.activeService,
    blueGreen?.previewService,
  ];
  const nginx = canary?.trafficRouting?.nginx;
  const ingresses = [nginx?.stableIngress, ...(nginx?.stableIngresses ?? [])];
  const names = (list: (string | undefined)[]) => [...new Set(list.filter((n): n is string => Boolean(n)))];
  return { services: names(services), ingresses: names(ingresses) };
}

/** References that do not exist: a condition that clears itself once they are created. */
export function missingReferences(ro: Rollout, observed: Observed): string[] {
  const ns = ro.metadata.namespace;
  const { services, ingresses } = referencedNames(ro);
  return [
    ...services
      .filter((name) => !observed.services[name])
      .map((name) => `service "${name}" does not exist in namespace ${ns}`),
    ...ingresses
      .filter((name) => !observed.ingresses[name])
      .map((name) => `ingress "${name}" does not exist in namespace ${ns}`),
    ...observed.missing,
  ];
}
