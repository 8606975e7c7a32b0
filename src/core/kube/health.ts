// Resource health, after Argo CD's gitops-engine `pkg/health` (health_*.go) and the Argo Rollouts
// health check Argo CD ships (resource_customizations/argoproj.io/Rollout/health.lua). Pure: it reads
// one live object and returns a status; callers aggregate with worstHealth.
import {
  apiGroup,
  annotation,
  arrayField,
  conditionsOf,
  field,
  findCondition,
  isRecord,
  numberField,
  optionalNumber,
  stringField,
  type KubeCondition,
  type KubeResource,
} from './resource.ts';

export type HealthStatusCode = 'Healthy' | 'Progressing' | 'Degraded' | 'Suspended' | 'Missing' | 'Unknown';

export interface HealthStatus {
  status: HealthStatusCode;
  message?: string;
}

export interface HealthOptions {
  /** The clock, for time-based checks (a Pod unschedulable for over 5 minutes). Defaults to now. */
  now?: Date;
}

/**
 * Most healthy first, as gitops-engine's `healthOrder` (used by `IsWorse` and by Argo CD to roll
 * resource health up to the Application): Healthy < Suspended < Progressing < Missing < Degraded <
 * Unknown. Unknown ranks worst: a health check that could not decide is treated as a failure.
 */
export const HEALTH_ORDER: readonly HealthStatusCode[] = [
  'Healthy',
  'Suspended',
  'Progressing',
  'Missing',
  'Degraded',
  'Unknown',
];

/** True when `next` is strictly worse than `current` (gitops-engine `health.IsWorse`). */
export function isWorse(current: HealthStatusCode, next: HealthStatusCode): boolean {
  return HEALTH_ORDER.indexOf(next) > HEALTH_ORDER.indexOf(current);
}

/**
 * The worst of several health results, as Argo CD aggregates an Application's resources. Entries that
 * are undefined (kinds without a health check) are ignored; an empty list is Healthy. On ties the
 * first one wins, so its message is kept.
 */
export function worstHealth(list: Iterable<HealthStatus | undefined>): HealthStatus {
  let worst: HealthStatus = { status: 'Healthy' };
  let seen = false;
  for (const h of list) {
    if (!h) continue;
    if (!seen || isWorse(worst.status, h.status)) worst = h;
    seen = true;
  }
  return worst;
}

/** Argo CD's annotation that makes a Running Pod with restartPolicy Never/OnFailure judged by readiness. */
export const ANNOTATION_IGNORE_RESTART_POLICY = 'argocd.argoproj.io/ignore-restart-policy';

type Check = (obj: KubeResource, opts: Required<HealthOptions>) => HealthStatus;

/** `group/Kind` → check, like gitops-engine's GetHealthCheckFunc switch. */
const CHECKS: Record<string, Check> = {
  'apps/Deployment': deploymentHealth,
  'extensions/Deployment': deploymentHealth,
  'apps/StatefulSet': statefulSetHealth,
  'apps/DaemonSet': daemonSetHealth,
  'extensions/DaemonSet': daemonSetHealth,
  'apps/ReplicaSet': replicaSetHealth,
  'extensions/ReplicaSet': replicaSetHealth,
  '/Pod': podHealth,
  '/Service': serviceHealth,
  '/PersistentVolumeClaim': pvcHealth,
  'networking.k8s.io/Ingress': ingressHealth,
  'extensions/Ingress': ingressHealth,
  'batch/Job': jobHealth,
  'apiextensions.k8s.io/CustomResourceDefinition': crdHealth,
  'autoscaling/HorizontalPodAutoscaler': hpaHealth,
  'apiregistration.k8s.io/APIService': apiServiceHealth,
  'argoproj.io/Rollout': rolloutHealth,
  'kube-actions.dev/Rollout': rolloutHealth,
};

/**
 * The health of a live object, or undefined when its kind has no notion of health (ConfigMap,
 * Secret, RBAC, ...): callers treat that as healthy, as Argo CD does.
 */
export function assessHealth(obj: KubeResource, options: HealthOptions = {}): HealthStatus | undefined {
  // gitops-engine GetResourceHealth: an object being deleted is Progressing whatever its kind.
  if (obj.metadata.deletionTimestamp) return { status: 'Progressing', message: 'Pending deletion' };
  const opts = { now: options.now ?? new Date() };
  const check = CHECKS[`${apiGroup(obj.apiVersion)}/${obj.kind}`];
  if (check) return check(obj, opts);
  return conditionsHealth(obj);
}

const withMessage = (status: HealthStatusCode, message: string | undefined): HealthStatus =>
  message ? { status, message } : { status };

function isTrue(c: KubeCondition | undefined): boolean {
  return c?.status === 'True';
}

// --- apps ---------------------------------------------------------------------------------------

// health_deployment.go, itself kubectl's `rollout status` logic.
function deploymentHealth(obj: KubeResource): HealthStatus {
  if (field(obj.spec, 'paused') === true) return { status: 'Suspended', message: 'Deployment is paused' };
  const generation = obj.metadata.generation ?? 0;
  if (generation > numberField(obj.status, ['observedGeneration'])) {
    return {
      status: 'Progressing',
      message: 'Waiting for rollout to finish: observed deployment generation less than desired generation',
    };
  }
  if (findCondition(obj, 'Progressing')?.reason === 'ProgressDeadlineExceeded') {
    return {
      status: 'Degraded',
      message: `Deployment "${obj.metadata.name}" exceeded its progress deadline`,
    };
  }
  const desired = optionalNumber(obj.spec, ['replicas']);
  const replicas = numberField(obj.status, ['replicas']);
  const updated = numberField(obj.status, ['updatedReplicas']);
  const available = numberField(obj.status, ['availableReplicas']);
  if (desired !== undefined && updated < desired) {
    return {
      status: 'Progressing',
      message: `Waiting for rollout to finish: ${updated} out of ${desired} new replicas have been updated...`,
    };
  }
  if (replicas > updated) {
    return {
      status: 'Progressing',
      message: `Waiting for rollout to finish: ${replicas - updated} old replicas are pending termination...`,
    };
  }
  if (available < updated) {
    return {
      status: 'Progressing',
      message: `Waiting for rollout to finish: ${available} of ${updated} updated replicas are available...`,
    };
  }
  return { status: 'Healthy' };
}

// health_statefulset.go. Note the order: with a RollingUpdate strategy that has a `rollingUpdate`
// block (the apiserver always defaults one) the partition check decides and revisions are not
// compared; OnDelete is Healthy once the pods are ready because pods update only when deleted.
function statefulSetHealth(obj: KubeResource): HealthStatus {
  const observed = numberField(obj.status, ['observedGeneration']);
  if (observed === 0 || (obj.metadata.generation ?? 0) > observed) {
    return { status: 'Progressing', message: 'Waiting for statefulset spec update to be observed...' };
  }
  const desired = optionalNumber(obj.spec, ['replicas']);
  const ready = numberField(obj.status, ['readyReplicas']);
  const updated = numberField(obj.status, ['updatedReplicas']);
  if (desired !== undefined && ready < desired) {
    return { status: 'Progressing', message: `Waiting for ${desired - ready} pods to be ready...` };
  }
  const strategy = stringField(obj.spec, ['updateStrategy', 'type']);
  const rollingUpdate = field(obj.spec, 'updateStrategy', 'rollingUpdate');
  if (strategy === 'RollingUpdate' && isRecord(rollingUpdate)) {
    const partition = optionalNumber(rollingUpdate, ['partition']);
    if (desired !== undefined && partition !== undefined && updated < desired - partition) {
      return {
        status: 'Progressing',
        message: `Waiting for partitioned roll out to finish: ${updated} out of ${desired - partition} new pods have been updated...`,
      };
    }
    return {
      status: 'Healthy',
      message: `partitioned roll out complete: ${updated} new pods have been updated...`,
    };
  }
  if (strategy === 'OnDelete') {
    return { status: 'Healthy', message: `statefulset has ${ready} ready pods (${updated} updated)` };
  }
  const updateRevision = stringField(obj.status, ['updateRevision']);
  const currentRevision = stringField(obj.status, ['currentRevision']);
  if (updateRevision !== currentRevision) {
    return {
      status: 'Progressing',
      message: `waiting for statefulset rolling update to complete ${updated} pods at revision ${updateRevision}...`,
    };
  }
  const current = numberField(obj.status, ['currentReplicas']);
  return {
    status: 'Healthy',
    message: `statefulset rolling update complete ${current} pods at revision ${currentRevision}...`,
  };
}

// health_daemonset.go.
function daemonSetHealth(obj: KubeResource): HealthStatus {
  if ((obj.metadata.generation ?? 0) > numberField(obj.status, ['observedGeneration'])) {
    return {
      status: 'Progressing',
      message: 'Waiting for rollout to finish: observed daemon set generation less than desired generation',
    };
  }
  const desired = numberField(obj.status, ['desiredNumberScheduled']);
  const updated = numberField(obj.status, ['updatedNumberScheduled']);
  const available = numberField(obj.status, ['numberAvailable']);
  if (stringField(obj.spec, ['updateStrategy', 'type']) === 'OnDelete') {
    return {
      status: 'Healthy',
      message: `daemon set ${updated} out of ${desired} new pods have been updated`,
    };
  }
  const name = obj.metadata.name ?? '';
  if (updated < desired) {
    return {
      status: 'Progressing',
      message: `Waiting for daemon set "${name}" rollout to finish: ${updated} out of ${desired} new pods have been updated...`,
    };
  }
  if (available < desired) {
    return {
      status: 'Progressing',
      message: `Waiting for daemon set "${name}" rollout to finish: ${available} of ${desired} updated pods are available...`,
    };
  }
  return { status: 'Healthy' };
}

// health_replicaset.go.
function replicaSetHealth(obj: KubeResource): HealthStatus {
  if ((obj.metadata.generation ?? 0) > numberField(obj.status, ['observedGeneration'])) {
    return {
      status: 'Progressing',
      message: 'Waiting for rollout to finish: observed replica set generation less than desired generation',
    };
  }
  const failure = findCondition(obj, 'ReplicaFailure');
  if (isTrue(failure)) return withMessage('Degraded', failure?.message);
  const desired = optionalNumber(obj.spec, ['replicas']);
  const available = numberField(obj.status, ['availableReplicas']);
  if (desired !== undefined && available < desired) {
    return {
      status: 'Progressing',
      message: `Waiting for rollout to finish: ${available} out of ${desired} new replicas are available...`,
    };
  }
  return { status: 'Healthy' };
}

// --- core ---------------------------------------------------------------------------------------

/** A container stuck waiting for a reason that will not fix itself (gitops-engine health_pod.go). */
export function isContainerErrorReason(reason: string): boolean {
  return reason.startsWith('Err') || reason.endsWith('Error') || reason.endsWith('BackOff');
}

const UNSCHEDULABLE_GRACE_MS = 5 * 60 * 1000;

// health_pod.go. Error states (CrashLoopBackOff, ImagePullBackOff, ErrImagePull, CreateContainerConfigError)
// make only long-running pods (restartPolicy Always) Degraded: a hook pod (Never/OnFailure) that hits
// them must not fail a sync early and then run after the sync has finished.
function podHealth(obj: KubeResource, opts: Required<HealthOptions>): HealthStatus {
  const restartPolicy = stringField(obj.spec, ['restartPolicy']) || 'Always';
  const statusMessage = stringField(obj.status, ['message']) || undefined;
  const containerStatuses = arrayField(obj.status, ['containerStatuses']);

  if (restartPolicy === 'Always') {
    const messages: string[] = [];
    for (const cs of containerStatuses) {
      const reason = stringField(cs, ['state', 'waiting', 'reason']);
      if (reason && isContainerErrorReason(reason)) {
        messages.push(stringField(cs, ['state', 'waiting', 'message']) || reason);
      }
    }
    if (messages.length === 0) {
      const scheduled = findCondition(obj, 'PodScheduled');
      const since = Date.parse(scheduled?.lastTransitionTime ?? '');
      if (scheduled?.status === 'False' && since < opts.now.getTime() - UNSCHEDULABLE_GRACE_MS) {
        messages.push(scheduled.message ?? scheduled.reason ?? 'Pod is unschedulable');
      }
    }
    if (messages.length > 0) return { status: 'Degraded', message: messages.join(', ') };
  }

  switch (stringField(obj.status, ['phase'])) {
    case 'Pending':
      return withMessage('Progressing', statusMessage);
    case 'Succeeded':
      return withMessage('Healthy', statusMessage);
    case 'Failed': {
      if (statusMessage) return { status: 'Degraded', message: statusMessage };
      const all = [...arrayField(obj.status, ['initContainerStatuses']), ...containerStatuses];
      for (const cs of all) {
        const message = terminatedMessage(cs);
        if (message) return { status: 'Degraded', message };
      }
      return { status: 'Degraded' };
    }
    case 'Running': {
      const judgeByReadiness =
        restartPolicy === 'Always' || annotation(obj, ANNOTATION_IGNORE_RESTART_POLICY) !== undefined;
      // Never/OnFailure pods have a finite life (typically hooks): running is not yet done.
      if (!judgeByReadiness) return withMessage('Progressing', statusMessage);
      if (isTrue(findCondition(obj, 'Ready'))) return withMessage('Healthy', statusMessage);
      // Not ready after a container has already died at least once: crash-looping in all but name.
      if (containerStatuses.some((cs) => isRecord(field(cs, 'lastState', 'terminated')))) {
        return withMessage('Degraded', statusMessage);
      }
      return withMessage('Progressing', statusMessage);
    }
    default:
      return withMessage('Unknown', statusMessage);
  }
}

function terminatedMessage(containerStatus: unknown): string | undefined {
  const terminated = field(containerStatus, 'state', 'terminated');
  if (!isRecord(terminated)) return undefined;
  const message = stringField(terminated, ['message']);
  if (message) return message;
  if (terminated.reason === 'OOMKilled') return 'OOMKilled';
  const exitCode = numberField(terminated, ['exitCode']);
  if (exitCode !== 0) {
    return `container "${stringField(containerStatus, ['name'])}" failed with exit code ${exitCode}`;
  }
  return undefined;
}

// health_service.go: only a LoadBalancer waits, for the cloud to assign an address.
function serviceHealth(obj: KubeResource): HealthStatus {
  if (stringField(obj.spec, ['type']) !== 'LoadBalancer') return { status: 'Healthy' };
  return arrayField(obj.status, ['loadBalancer', 'ingress']).length > 0
    ? { status: 'Healthy' }
    : { status: 'Progressing', message: 'Waiting for the load balancer to be assigned an address' };
}

// health_ingress.go: Healthy once the controller has published an address.
function ingressHealth(obj: KubeResource): HealthStatus {
  return arrayField(obj.status, ['loadBalancer', 'ingress']).length > 0
    ? { status: 'Healthy' }
    : { status: 'Progressing', message: 'Waiting for the ingress controller to assign an address' };
}

// health_pvc.go.
function pvcHealth(obj: KubeResource): HealthStatus {
  const phase = stringField(obj.status, ['phase']);
  switch (phase) {
    case 'Bound':
      return { status: 'Healthy' };
    case 'Pending':
      return { status: 'Progressing', message: 'Waiting for the claim to be bound' };
    case 'Lost':
      return { status: 'Degraded', message: 'The bound PersistentVolume is lost' };
    default:
      return { status: 'Unknown', message: phase ? `Unknown claim phase "${phase}"` : 'Claim has no phase' };
  }
}

// --- batch --------------------------------------------------------------------------------------

// health_job.go. Deviation: gitops-engine treats any Complete/Failed/Suspended condition as
// terminal whatever its status, so a resumed Job (Suspended=False) reads Healthy while it runs; we
// count only conditions that are True, and `spec.suspend: true` is Suspended even before the Job
// controller has written the condition.
function jobHealth(obj: KubeResource): HealthStatus {
  const failed = findCondition(obj, 'Failed');
  if (isTrue(failed)) return withMessage('Degraded', failed?.message ?? failed?.reason);
  const complete = findCondition(obj, 'Complete');
  if (isTrue(complete)) return withMessage('Healthy', complete?.message);
  const suspended = findCondition(obj, 'Suspended');
  if (isTrue(suspended)) return withMessage('Suspended', suspended?.message ?? 'Job suspended');
  if (field(obj.spec, 'suspend') === true) return { status: 'Suspended', message: 'Job suspended' };
  return { status: 'Progressing' };
}

// --- extension APIs -----------------------------------------------------------------------------

// health_customresourcedefinition.go: precedence Terminating > NamesAccepted=False >
// Established≠True > NonStructuralSchema=True > Healthy.
function crdHealth(obj: KubeResource): HealthStatus {
  const conditions = conditionsOf(obj);
  if (conditions.length === 0) return { status: 'Progressing', message: 'Status conditions not found' };
  const by = (type: string) => conditions.find((c) => c.type === type);
  const terminating = by('Terminating');
  if (isTrue(terminating)) {
    return { status: 'Progressing', message: `CRD is being terminated: ${terminating?.message ?? ''}` };
  }
  const names = by('NamesAccepted');
  if (names?.status === 'False') {
    return { status: 'Degraded', message: `CRD names have not been accepted: ${names.message ?? ''}` };
  }
  const established = by('Established');
  if (!isTrue(established)) {
    return { status: 'Degraded', message: `CRD is not established: ${established?.message ?? ''}` };
  }
  const nonStructural = by('NonStructuralSchema');
  if (isTrue(nonStructural)) {
    return { status: 'Degraded', message: `Schema violations found: ${nonStructural?.message ?? ''}` };
  }
  return { status: 'Healthy', message: 'CRD is healthy' };
}

// health_hpa.go as revised by argo-cd PR #26274: any condition in a known failure state makes the
// HPA Degraded (checked across all conditions first, so an AbleToScale=True listed earlier cannot
// hide it); else AbleToScale=True or ScalingLimited=True is Healthy; else Progressing.
const HPA_DEGRADED: Record<string, readonly string[]> = {
  AbleToScale: ['FailedGetScale', 'FailedUpdateScale'],
  ScalingActive: [
    'FailedGetResourceMetric',
    'FailedGetContainerResourceMetric',
    'FailedGetPodsMetric',
    'FailedGetObjectMetric',
    'FailedGetExternalMetric',
    'InvalidSelector',
    'InvalidMetricSourceType',
  ],
};
const HPA_WAITING: HealthStatus = { status: 'Progressing', message: 'Waiting to Autoscale' };

function hpaHealth(obj: KubeResource): HealthStatus {
  let conditions: KubeCondition[];
  if (obj.apiVersion === 'autoscaling/v1') {
    // v1 has no status.conditions; the apiserver round-trips them through this annotation.
    const raw = annotation(obj, 'autoscaling.alpha.kubernetes.io/conditions');
    if (raw === undefined) return HPA_WAITING;
    try {
      conditions = conditionsOf({ status: { conditions: JSON.parse(raw) as unknown } });
    } catch (err) {
      return {
        status: 'Unknown',
        message: `failed to parse HPA conditions annotation: ${(err as Error).message}`,
      };
    }
  } else {
    conditions = conditionsOf(obj);
  }
  const degraded = conditions.find((c) => HPA_DEGRADED[c.type]?.includes(c.reason ?? ''));
  if (degraded) return withMessage('Degraded', degraded.message);
  const healthy = conditions.find(
    (c) => (c.type === 'AbleToScale' || c.type === 'ScalingLimited') && isTrue(c),
  );
  if (healthy) return withMessage('Healthy', healthy.message);
  return HPA_WAITING;
}

// health_apiservice.go: the aggregated API answers once Available=True.
function apiServiceHealth(obj: KubeResource): HealthStatus {
  const available = findCondition(obj, 'Available');
  if (!available) return { status: 'Progressing', message: 'Waiting to be processed' };
  const message = `${available.reason ?? ''}: ${available.message ?? ''}`;
  return { status: isTrue(available) ? 'Healthy' : 'Progressing', message };
}

// --- Rollout ------------------------------------------------------------------------------------

// Argo CD's argoproj.io/Rollout health.lua, applied to both our Rollout and Argo's.
function rolloutHealth(obj: KubeResource): HealthStatus {
  if (!rolloutGenerationObserved(obj)) {
    return { status: 'Progressing', message: 'Waiting for rollout spec update to be observed' };
  }
  // Our addition: an aborted rollout is Degraded whatever phase it has reached while scaling back.
  if (field(obj.status, 'abort') === true) {
    return { status: 'Degraded', message: stringField(obj.status, ['message']) || 'Rollout aborted' };
  }
  // Since Rollouts v1.0 the controller records a phase/message that health.lua surfaces as is,
  // mapping Paused to Argo CD's Suspended.
  const phase = field(obj.status, 'phase');
  if (typeof phase === 'string') {
    const message = stringField(obj.status, ['message']) || undefined;
    switch (phase) {
      case 'Paused':
        return withMessage('Suspended', message);
      case 'Healthy':
      case 'Progressing':
      case 'Degraded':
        return withMessage(phase, message);
      default:
        return {
          status: 'Unknown',
          message: `unknown rollout phase "${phase}"${message ? `: ${message}` : ''}`,
        };
    }
  }
  return legacyRolloutHealth(obj);
}

function rolloutGenerationObserved(obj: KubeResource): boolean {
  if (!isRecord(obj.status)) return false;
  // Argo Rollouts stores observedGeneration as a string; before v0.10 it was a pod hash, which
  // counts as observed (as does a number above the generation, an all-digit hash).
  const raw = obj.status.observedGeneration;
  const observed =
    typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN;
  const generation = obj.metadata.generation ?? 0;
  if (Number.isNaN(observed) || observed > generation) return workloadGenerationObserved(obj);
  return observed === generation && workloadGenerationObserved(obj);
}

// v1.1 workloadRef rollouts also record which generation of the referenced Deployment they saw.
function workloadGenerationObserved(obj: KubeResource): boolean {
  if (field(obj.spec, 'workloadRef') === undefined) return true;
  const wanted = annotation(obj, 'rollout.argoproj.io/workload-generation');
  if (wanted === undefined) return true;
  return Number(wanted) === Number(field(obj.status, 'workloadObservedGeneration'));
}

// The pre-v1.0 branch of health.lua, for a Rollout whose controller does not write status.phase.
function legacyRolloutHealth(obj: KubeResource): HealthStatus {
  for (const c of conditionsOf(obj)) {
    if (c.type === 'InvalidSpec') return withMessage('Degraded', c.message);
    if (
      c.type === 'Progressing' &&
      (c.reason === 'RolloutAborted' || c.reason === 'ProgressDeadlineExceeded')
    ) {
      return withMessage('Degraded', c.message);
    }
  }
  if (arrayField(obj.status, ['pauseConditions']).length > 0 || field(obj.spec, 'paused') === true) {
    return { status: 'Suspended', message: 'Rollout is paused' };
  }
  const currentPodHash = stringField(obj.status, ['currentPodHash']);
  if (!currentPodHash) {
    return {
      status: 'Progressing',
      message: 'Waiting for rollout to finish: status has not been reconciled.',
    };
  }
  const desired = numberField(obj.spec, ['replicas'], 1);
  const replicas = numberField(obj.status, ['replicas']);
  const updated = numberField(obj.status, ['updatedReplicas']);
  const available = numberField(obj.status, ['availableReplicas']);
  if (updated < desired) {
    return {
      status: 'Progressing',
      message: 'Waiting for roll out to finish: More replicas need to be updated',
    };
  }
  if (available < updated) {
    return {
      status: 'Progressing',
      message: 'Waiting for roll out to finish: updated replicas are still becoming available',
    };
  }
  const stableRS = stringField(obj.status, ['stableRS']) || stringField(obj.status, ['canary', 'stableRS']);
  if (field(obj.spec, 'strategy', 'blueGreen') !== undefined) {
    if (stringField(obj.status, ['blueGreen', 'activeSelector']) !== currentPodHash) {
      return { status: 'Progressing', message: 'active service cutover pending' };
    }
    if (stableRS && stableRS !== currentPodHash) {
      return { status: 'Progressing', message: 'waiting for analysis to complete' };
    }
  } else if (field(obj.spec, 'strategy', 'canary') !== undefined) {
    if (replicas > updated) {
      return {
        status: 'Progressing',
        message: 'Waiting for roll out to finish: old replicas are pending termination',
      };
    }
    if (stableRS !== currentPodHash)
      return { status: 'Progressing', message: 'Waiting for rollout to finish steps' };
  }
  return { status: 'Healthy' };
}

// --- custom resources ---------------------------------------------------------------------------

/**
 * Fallback for kinds without a built-in check: CRs that follow the Kubernetes condition convention.
 * Guarded as Argo CD's generic checks are: only when a `Ready` (preferred) or `Healthy` condition
 * exists, otherwise undefined (no health). True → Healthy, False → Degraded, Unknown → Progressing.
 * A status or condition `observedGeneration` behind `metadata.generation` means the verdict is stale
 * (kstatus semantics), so it is Progressing.
 */
function conditionsHealth(obj: KubeResource): HealthStatus | undefined {
  const condition = findCondition(obj, 'Ready') ?? findCondition(obj, 'Healthy');
  if (!condition) return undefined;
  const generation = obj.metadata.generation;
  const observed = condition.observedGeneration ?? optionalNumber(obj.status, ['observedGeneration']);
  if (generation !== undefined && observed !== undefined && observed < generation) {
    return { status: 'Progressing', message: 'Waiting for the controller to observe the latest generation' };
  }
  const message = condition.message ?? condition.reason;
  switch (condition.status) {
    case 'True':
      return withMessage('Healthy', message);
    case 'False':
      return withMessage('Degraded', message);
    default:
      return withMessage('Progressing', message);
  }
}
