// The Rollout resource (kube-actions.dev/v1alpha1), with Argo Rollouts' field names and defaults:
// an Argo Rollouts manifest converts by changing its apiVersion. deploy/crds/rollout.yaml is its schema.
import type { KubeObject, ResourceRef } from '../../core/kube/objects.ts';

export const ROLLOUT: ResourceRef = {
  apiVersion: 'kube-actions.dev/v1alpha1',
  resource: 'rollouts',
  namespaced: true,
};
export const REPLICASETS: ResourceRef = { apiVersion: 'apps/v1', resource: 'replicasets', namespaced: true };
export const SERVICES: ResourceRef = { apiVersion: 'v1', resource: 'services', namespaced: true };
export const DEPLOYMENTS: ResourceRef = { apiVersion: 'apps/v1', resource: 'deployments', namespaced: true };
export const INGRESSES: ResourceRef = {
  apiVersion: 'networking.k8s.io/v1',
  resource: 'ingresses',
  namespaced: true,
};

/** Argo Rollouts' label on ReplicaSets, pods and Service selectors. */
export const POD_TEMPLATE_HASH = 'rollouts-pod-template-hash';
/** Marks Services and Ingresses whose selectors or weights a Rollout manages (Argo's annotation). */
export const MANAGED_BY = 'argo-rollouts.argoproj.io/managed-by-rollouts';
/** When an old ReplicaSet may be scaled down (RFC 3339), as Argo Rollouts annotates it. */
export const SCALE_DOWN_DEADLINE = 'argo-rollouts.argoproj.io/scale-down-deadline';
/** A ReplicaSet's template as the Rollout had it (JSON), before the server added defaults. */
export const SOURCE_TEMPLATE = 'kube-actions.dev/rollout-template';
/** The revision of a ReplicaSet's template, as Deployments number them. */
export const REVISION = 'rollout.argoproj.io/revision';

/** Seconds an old revision keeps its pods after traffic left it (Argo's default scaleDownDelaySeconds). */
export const DEFAULT_SCALE_DOWN_DELAY = 30;

export type IntOrString = number | string;

export interface RolloutAnalysis {
  templates?: { templateName: string; clusterScope?: boolean }[];
  args?: { name: string; value?: string; valueFrom?: unknown }[];
  startingStep?: number;
}

export interface CanaryStep {
  setWeight?: number;
  pause?: { duration?: IntOrString };
  setCanaryScale?: { replicas?: number; weight?: number; matchTrafficWeight?: boolean };
  analysis?: RolloutAnalysis;
  experiment?: unknown;
  setHeaderRoute?: unknown;
  setMirrorRoute?: unknown;
  plugin?: unknown;
}

export interface CanaryStrategy {
  canaryService?: string;
  stableService?: string;
  maxSurge?: IntOrString;
  maxUnavailable?: IntOrString;
  steps?: CanaryStep[];
  analysis?: RolloutAnalysis;
  scaleDownDelaySeconds?: number;
  abortScaleDownDelaySeconds?: number;
  dynamicStableScale?: boolean;
  trafficRouting?: {
    nginx?: {
      stableIngress?: string;
      stableIngresses?: string[];
      annotationPrefix?: string;
      additionalIngressAnnotations?: Record<string, string>;
    };
    maxTrafficWeight?: number;
    [other: string]: unknown;
  };
}

export interface BlueGreenStrategy {
  activeService: string;
  previewService?: string;
  autoPromotionEnabled?: boolean;
  autoPromotionSeconds?: number;
  previewReplicaCount?: number;
  scaleDownDelaySeconds?: number;
  abortScaleDownDelaySeconds?: number;
  prePromotionAnalysis?: RolloutAnalysis;
  postPromotionAnalysis?: RolloutAnalysis;
}

export interface PodTemplate {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: { containers?: { name: string; image?: string }[]; [k: string]: unknown };
}

export type PauseReason = 'CanaryPauseStep' | 'BlueGreenPause' | 'InconclusiveAnalysisRun';

export interface RolloutCondition {
  type: 'InvalidSpec' | 'Available' | 'Progressing' | 'ReplicaFailure' | 'Paused' | 'Completed' | 'Healthy';
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastUpdateTime: string;
  lastTransitionTime: string;
}

export interface RolloutStatus {
  phase?: 'Healthy' | 'Progressing' | 'Paused' | 'Degraded';
  message?: string;
  observedGeneration?: string;
  currentPodHash?: string;
  stableRS?: string;
  currentStepIndex?: number;
  currentStepHash?: string;
  pauseConditions?: { reason: PauseReason; startTime: string }[];
  controllerPause?: boolean;
  abort?: boolean;
  abortedAt?: string;
  promoteFull?: boolean;
  replicas?: number;
  updatedReplicas?: number;
  readyReplicas?: number;
  availableReplicas?: number;
  HPAReplicas?: number;
  selector?: string;
  canary?: {
    weights?: {
      canary: { weight: number; podTemplateHash?: string; serviceName?: string };
      stable: { weight: number; podTemplateHash?: string; serviceName?: string };
    };
    currentStepAnalysisRunStatus?: { name: string; status: string; message?: string };
    currentBackgroundAnalysisRunStatus?: { name: string; status: string; message?: string };
  };
  blueGreen?: {
    activeSelector?: string;
    previewSelector?: string;
    prePromotionAnalysisRunStatus?: { name: string; status: string; message?: string };
    postPromotionAnalysisRunStatus?: { name: string; status: string; message?: string };
    scaleUpPreviewCheckPoint?: boolean;
  };
  conditions?: RolloutCondition[];
  /** When the current revision started progressing (for progressDeadlineSeconds). */
  progressStartedAt?: string;
}

export interface Rollout extends KubeObject {
  apiVersion: string;
  kind: 'Rollout';
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    generation?: number;
    resourceVersion?: string;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
  };
  spec: {
    replicas?: number;
    selector?: { matchLabels?: Record<string, string>; matchExpressions?: unknown[] };
    template?: PodTemplate;
    workloadRef?: {
      apiVersion: string;
      kind: string;
      name: string;
      scaleDown?: 'never' | 'onsuccess' | 'progressively';
    };
    minReadySeconds?: number;
    revisionHistoryLimit?: number;
    paused?: boolean;
    progressDeadlineSeconds?: number;
    progressDeadlineAbort?: boolean;
    strategy?: { canary?: CanaryStrategy; blueGreen?: BlueGreenStrategy };
  };
  status?: RolloutStatus;
}

export interface ReplicaSet extends KubeObject {
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
    creationTimestamp?: string;
    deletionTimestamp?: string;
  };
  spec: {
    replicas?: number;
    minReadySeconds?: number;
    selector: { matchLabels: Record<string, string> };
    template: PodTemplate;
  };
  status?: {
    replicas?: number;
    readyReplicas?: number;
    availableReplicas?: number;
    observedGeneration?: number;
  };
}

/** The parts of a Deployment a workloadRef reads and scales. */
export interface Deployment extends KubeObject {
  spec: { replicas?: number; selector: { matchLabels?: Record<string, string> }; template: PodTemplate };
}
