// The analysis API: AnalysisTemplate, ClusterAnalysisTemplate and AnalysisRun. Field names and
// meanings follow Argo Rollouts' argoproj.io/v1alpha1 types, so an Argo manifest converts by
// changing its apiVersion. Objects are the apiserver's JSON (timestamps are RFC 3339 strings).
import type { KubeObject, ObjectMeta, ResourceRef } from '../../core/kube/objects.ts';

export const API_VERSION = 'kube-actions.dev/v1alpha1';

export const ANALYSIS_TEMPLATE: ResourceRef = { apiVersion: API_VERSION, resource: 'analysistemplates' };
export const CLUSTER_ANALYSIS_TEMPLATE: ResourceRef = {
  apiVersion: API_VERSION,
  resource: 'clusteranalysistemplates',
  namespaced: false,
};
export const ANALYSIS_RUN: ResourceRef = { apiVersion: API_VERSION, resource: 'analysisruns' };
export const JOBS: ResourceRef = { apiVersion: 'batch/v1', resource: 'jobs' };
export const SECRETS: ResourceRef = { apiVersion: 'v1', resource: 'secrets' };

export type AnalysisPhase = 'Pending' | 'Running' | 'Successful' | 'Failed' | 'Error' | 'Inconclusive';

/** A phase nothing changes any more. */
export function phaseCompleted(phase: AnalysisPhase | undefined): boolean {
  return phase === 'Successful' || phase === 'Failed' || phase === 'Error' || phase === 'Inconclusive';
}

export interface Argument {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: { name: string; key: string };
    /** Resolved when the run is created (against the object creating it, e.g. a Rollout). */
    fieldRef?: { fieldPath: string };
  };
}

export interface KeyValue {
  key: string;
  value: string;
}

export type IntOrString = number | string;

export interface PrometheusMetric {
  address?: string;
  query: string;
  /** Seconds; default 30. */
  timeout?: number;
  headers?: KeyValue[];
  [other: string]: unknown;
}

export interface WebMetric {
  url: string;
  /** GET (default), POST or PUT. */
  method?: string;
  headers?: KeyValue[];
  body?: string;
  jsonBody?: unknown;
  /** Default "{$}": the whole response. */
  jsonPath?: string;
  /** Default 10. */
  timeoutSeconds?: number;
  insecure?: boolean;
}

/** A workflow_dispatch run as a measurement (providers/github-workflow.ts). */
export interface GitHubWorkflowMetric {
  /** owner/name. */
  repository: string;
  /** The workflow's file name (`smoke-test.yml`) or id. */
  workflow: string;
  /** Branch or tag; default the repository's default branch. */
  ref?: string;
  inputs?: Record<string, string | number | boolean>;
  /** GitHub Enterprise Server's API, e.g. https://ghes.example/api/v3 (default GitHub's). */
  apiURL?: string;
  /** A Secret in the AnalysisRun's namespace holding the token (key default "token"). */
  tokenSecretRef: { name: string; key?: string };
}

export interface JobMetric {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: Record<string, unknown>;
}

export interface MetricProvider {
  prometheus?: PrometheusMetric;
  web?: WebMetric;
  job?: JobMetric;
  githubWorkflow?: GitHubWorkflowMetric;
  /** Argo's other providers (datadog, newRelic, ...) are accepted and reported unsupported. */
  [other: string]: unknown;
}

export interface Metric {
  name: string;
  interval?: string;
  initialDelay?: string;
  count?: IntOrString;
  successCondition?: string;
  failureCondition?: string;
  failureLimit?: IntOrString;
  inconclusiveLimit?: IntOrString;
  consecutiveErrorLimit?: IntOrString;
  consecutiveSuccessLimit?: IntOrString;
  provider: MetricProvider;
}

export interface DryRun {
  /** A regular expression matched against metric names (unanchored, as Go's regexp.MatchString). */
  metricName: string;
}

export interface MeasurementRetention {
  metricName: string;
  limit: number;
}

export interface AnalysisTemplateRef {
  templateName: string;
  clusterScope?: boolean;
}

export interface AnalysisTemplateSpec {
  args?: Argument[];
  metrics?: Metric[];
  dryRun?: DryRun[];
  measurementRetention?: MeasurementRetention[];
  /** Templates this template includes (Argo Rollouts 1.7+). */
  templates?: AnalysisTemplateRef[];
}

export interface AnalysisTemplate extends KubeObject {
  metadata: ObjectMeta;
  spec: AnalysisTemplateSpec;
}

export interface AnalysisRunSpec {
  args?: Argument[];
  metrics: Metric[];
  dryRun?: DryRun[];
  measurementRetention?: MeasurementRetention[];
  /** Stop taking measurements; the run ends Successful unless a metric already failed. */
  terminate?: boolean;
}

export interface Measurement {
  phase: AnalysisPhase;
  message?: string;
  startedAt?: string;
  finishedAt?: string;
  value?: string;
  metadata?: Record<string, string>;
  /** When an in-flight measurement should be looked at again. */
  resumeAt?: string;
}

export interface MetricResult {
  name: string;
  phase: AnalysisPhase;
  measurements?: Measurement[];
  message?: string;
  count?: number;
  successful?: number;
  failed?: number;
  inconclusive?: number;
  error?: number;
  consecutiveError?: number;
  dryRun?: boolean;
  metadata?: Record<string, string>;
}

export interface RunSummary {
  count?: number;
  successful?: number;
  failed?: number;
  inconclusive?: number;
  error?: number;
}

export interface AnalysisRunStatus {
  phase?: AnalysisPhase;
  message?: string;
  metricResults?: MetricResult[];
  startedAt?: string;
  completedAt?: string;
  runSummary?: RunSummary;
  dryRunSummary?: RunSummary;
}

export interface AnalysisRun extends KubeObject {
  metadata: ObjectMeta;
  spec: AnalysisRunSpec;
  status?: AnalysisRunStatus;
}

/** Labels and annotations on the Jobs of job metrics (Argo's are analysisrun.argoproj.io/...). */
export const JOB_RUN_UID_LABEL = 'analysisrun.kube-actions.dev/uid';
export const JOB_RUN_NAME_ANNOTATION = 'analysisrun.kube-actions.dev/name';
export const JOB_METRIC_ANNOTATION = 'analysisrun.kube-actions.dev/metric-name';
/** The measurement metadata key naming a job metric's Job. */
export const JOB_NAME_KEY = 'job-name';
