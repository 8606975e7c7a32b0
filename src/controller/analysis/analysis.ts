// The analysis state machine as pure functions over an AnalysisRun's spec and status, following
// Argo Rollouts' analysis/analysis.go: which measurements are due, how measurements count
// against the limits, a metric's and the run's phase, when to look again, and how many
// measurements to keep. No I/O here: the reconciler runs providers and writes status.
import { RE2JS } from 're2js';
import { parseDurationMs } from '../../core/duration.ts';
import {
  phaseCompleted,
  type AnalysisPhase,
  type AnalysisRunSpec,
  type AnalysisRunStatus,
  type DryRun,
  type IntOrString,
  type Measurement,
  type MeasurementRetention,
  type Metric,
  type MetricResult,
  type RunSummary,
} from './types.ts';

export const DEFAULT_MEASUREMENT_HISTORY_LIMIT = 10;
export const DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4;
/** After an Error measurement, the next one comes this much later, whatever the interval. */
export const DEFAULT_ERROR_RETRY_INTERVAL_MS = 10_000;
export const SUPPORTED_PROVIDERS = ['prometheus', 'web', 'job', 'githubWorkflow'] as const;
export type ProviderKind = (typeof SUPPORTED_PROVIDERS)[number];
/** The provider fields this controller acts on; others (Argo's authentication, ...) are refused, not ignored. */
const PROVIDER_FIELDS: Record<ProviderKind, string[]> = {
  prometheus: ['address', 'query', 'timeout', 'headers', 'insecure'],
  web: ['url', 'method', 'headers', 'body', 'jsonBody', 'jsonPath', 'timeoutSeconds', 'insecure'],
  job: ['metadata', 'spec'],
  githubWorkflow: ['repository', 'workflow', 'ref', 'inputs', 'apiURL', 'tokenSecretRef'],
};

/** An integer field written as a number or a string ("3", or "{{args.count}}" once resolved). */
export function intValue(v: IntOrString | undefined, field: string): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`${field} must be an integer, not ${v}`);
    return v;
  }
  if (!/^[+-]?\d+$/.test(v.trim())) throw new Error(`${field} must be an integer, not ${JSON.stringify(v)}`);
  return Number(v.trim());
}

/** How many measurements the metric takes: count; 1 when there is no interval; unbounded otherwise. */
export function effectiveCount(metric: Metric): number | undefined {
  const count = intValue(metric.count, 'count') ?? 0;
  if (count === 0) return metric.interval ? undefined : 1;
  return count;
}

export const failureLimit = (m: Metric) => intValue(m.failureLimit, 'failureLimit') ?? 0;
export const inconclusiveLimit = (m: Metric) => intValue(m.inconclusiveLimit, 'inconclusiveLimit') ?? 0;
export const consecutiveErrorLimit = (m: Metric) =>
  intValue(m.consecutiveErrorLimit, 'consecutiveErrorLimit') ?? DEFAULT_CONSECUTIVE_ERROR_LIMIT;

/** The provider a metric names; throws when it names none, several, or one not supported. */
export function providerKind(metric: Metric): ProviderKind {
  const named = Object.entries(metric.provider ?? {})
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k]) => k);
  if (named.length === 0) throw new Error('no provider specified');
  if (named.length > 1) throw new Error(`multiple providers specified (${named.join(', ')})`);
  const kind = named[0]!;
  if (!(SUPPORTED_PROVIDERS as readonly string[]).includes(kind)) {
    throw new Error(
      `provider "${kind}" is not supported by kube-actions (supported: ${SUPPORTED_PROVIDERS.join(', ')})`,
    );
  }
  return kind as ProviderKind;
}

/** Argo's ValidateMetric, plus the providers this controller runs. Returns the problem, if any. */
export function validateMetric(metric: Metric): string | undefined {
  try {
    if (!metric.name) return 'metric has no name';
    const count = intValue(metric.count, 'count') ?? 0;
    // A negative count would count as reached before any measurement: Successful, having measured nothing.
    if (count < 0) return 'count must be >= 0';
    const failures = failureLimit(metric);
    const inconclusives = inconclusiveLimit(metric);
    if (count > 0) {
      if (count < failures) return 'count must be >= failureLimit';
      if (count < inconclusives) return 'count must be >= inconclusiveLimit';
    }
    if (count > 1 && !metric.interval) return 'interval must be specified when count > 1';
    if (metric.interval && parseDurationMs(metric.interval) === undefined) {
      return `invalid interval string: ${JSON.stringify(metric.interval)}`;
    }
    // 0s would measure in a loop as fast as the provider answers.
    if (metric.interval && parseDurationMs(metric.interval) === 0) return 'interval must be greater than 0';
    if (metric.initialDelay && parseDurationMs(metric.initialDelay) === undefined) {
      return `invalid initialDelay string: ${JSON.stringify(metric.initialDelay)}`;
    }
    if (failures < 0) return 'failureLimit must be >= 0';
    if (inconclusives < 0) return 'inconclusiveLimit must be >= 0';
    if (consecutiveErrorLimit(metric) < 0) return 'consecutiveErrorLimit must be >= 0';
    if ((intValue(metric.consecutiveSuccessLimit, 'consecutiveSuccessLimit') ?? 0) > 0) {
      return 'consecutiveSuccessLimit is not supported by kube-actions';
    }
    const kind = providerKind(metric);
    const config = metric.provider[kind] as Record<string, unknown>;
    if (typeof config !== 'object' || Array.isArray(config)) return `provider.${kind} must be an object`;
    const unsupported = Object.keys(config).filter((k) => !PROVIDER_FIELDS[kind].includes(k));
    if (unsupported.length) {
      return `provider.${kind}: ${unsupported.map((k) => `"${k}"`).join(', ')} not supported by kube-actions`;
    }
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

export function validateMetrics(metrics: Metric[] | undefined): string | undefined {
  if (!metrics?.length) return 'no metrics specified';
  const names = new Set<string>();
  for (const [i, metric] of metrics.entries()) {
    if (names.has(metric.name)) return `metrics[${i}]: duplicate name '${metric.name}'`;
    names.add(metric.name);
    const problem = validateMetric(metric);
    if (problem) return `metrics[${i}]: ${problem}`;
  }
  return undefined;
}

/**
 * A metric-name rule (Go's regexp.MatchString, unanchored), compiled by RE2 as Go compiles it: its
 * syntax, and time linear in the name, so a hostile `^(a|a)*$` cannot stall the event loop the way
 * JavaScript's backtracking engine does on a 25-character name.
 */
function matcher(pattern: string): (name: string) => boolean {
  let re: RE2JS | undefined;
  try {
    re = RE2JS.compile(pattern);
  } catch {
    re = undefined; // Go ignores the compile error: the rule then matches nothing.
  }
  return (name) => re?.test(name) ?? false;
}

/** Metric names in dry-run mode; every rule must match some metric (Argo's GetDryRunMetrics). */
export function dryRunMetrics(rules: DryRun[] | undefined, metrics: Metric[]): Set<string> {
  const out = new Set<string>();
  for (const [i, rule] of (rules ?? []).entries()) {
    const matches = matcher(rule.metricName);
    const hits = metrics.filter((m) => matches(m.name));
    if (hits.length === 0) throw new Error(`dryRun[${i}]: Rule didn't match any metric name(s)`);
    for (const m of hits) out.add(m.name);
  }
  return out;
}

/** The measurement limit per metric name (Argo's GetMeasurementRetentionMetrics). */
export function retentionLimits(
  rules: MeasurementRetention[] | undefined,
  metrics: Metric[],
): Map<string, number> {
  const out = new Map<string, number>();
  for (const [i, rule] of (rules ?? []).entries()) {
    const matches = matcher(rule.metricName);
    const hits = metrics.filter((m) => matches(m.name));
    if (hits.length === 0)
      throw new Error(`measurementRetention[${i}]: Rule didn't match any metric name(s)`);
    for (const m of hits) out.set(m.name, rule.limit);
  }
  return out;
}

export function getResult(status: AnalysisRunStatus, name: string): MetricResult | undefined {
  return status.metricResults?.find((r) => r.name === name);
}

export function lastMeasurement(result: MetricResult | undefined): Measurement | undefined {
  return result?.measurements?.at(-1);
}

const ms = (t: string | undefined): number | undefined => (t ? Date.parse(t) : undefined);

/**
 * Terminating: termination was requested, or a metric (not in dry-run) already ended Failed, Error
 * or Inconclusive, which ends the run early.
 */
export function isTerminating(spec: AnalysisRunSpec, status: AnalysisRunStatus): boolean {
  if (spec.terminate) return true;
  return (status.metricResults ?? []).some(
    (r) => !r.dryRun && (r.phase === 'Failed' || r.phase === 'Error' || r.phase === 'Inconclusive'),
  );
}

export interface MetricTask {
  /** Index into the metrics. */
  index: number;
  /** The in-flight measurement to resume (or terminate); absent: take a new one. */
  incomplete?: Measurement;
}

/** The measurements due now (Argo's generateMetricTasks). */
export function metricTasks(
  metrics: Metric[],
  status: AnalysisRunStatus,
  terminating: boolean,
  now: number,
  errorRetryMs = DEFAULT_ERROR_RETRY_INTERVAL_MS,
): MetricTask[] {
  const tasks: MetricTask[] = [];
  for (const [index, metric] of metrics.entries()) {
    const result = getResult(status, metric.name);
    if (phaseCompleted(result?.phase)) continue;
    const last = lastMeasurement(result);
    if (last && !last.finishedAt) {
      // A terminating run ends it now, whenever it was to be looked at again (Argo skips it, and
      // so never terminates what a provider with resumeAt started, e.g. a dispatched workflow).
      const resumeAt = ms(last.resumeAt);
      if (!terminating && resumeAt !== undefined && resumeAt > now) continue;
      tasks.push({ index, incomplete: last });
      continue;
    }
    if (terminating) continue;
    if (!last) {
      if (metric.initialDelay) {
        const startedAt = ms(status.startedAt);
        const delay = parseDurationMs(metric.initialDelay);
        if (startedAt === undefined || delay === undefined || startedAt + delay > now) continue;
      }
      tasks.push({ index });
      continue;
    }
    const count = effectiveCount(metric);
    if (count !== undefined && (result?.count ?? 0) >= count) continue;
    const interval = nextInterval(metric, last, errorRetryMs);
    if (interval === undefined) continue;
    if (now >= ms(last.finishedAt)! + interval) tasks.push({ index });
  }
  return tasks;
}

/** The wait after `last` before the next measurement; undefined when none is planned. */
function nextInterval(metric: Metric, last: Measurement, errorRetryMs: number): number | undefined {
  if (last.phase === 'Error') return errorRetryMs;
  if (metric.interval) return parseDurationMs(metric.interval);
  return undefined;
}

/** Counts a completed measurement in its metric's result. */
export function countMeasurement(result: MetricResult, phase: AnalysisPhase): void {
  result.count ??= 0;
  result.successful ??= 0;
  result.failed ??= 0;
  result.inconclusive ??= 0;
  result.error ??= 0;
  result.consecutiveError ??= 0;
  switch (phase) {
    case 'Successful':
      result.successful++;
      result.count++;
      result.consecutiveError = 0;
      break;
    case 'Failed':
      result.failed++;
      result.count++;
      result.consecutiveError = 0;
      break;
    case 'Inconclusive':
      result.inconclusive++;
      result.count++;
      result.consecutiveError = 0;
      break;
    case 'Error':
      result.error++;
      result.consecutiveError++;
      break;
    default:
      break;
  }
}

/** Failed, Inconclusive or Error once a limit is exceeded (Argo's assessMetricFailureInconclusiveOrError). */
export function limitsExceeded(
  metric: Metric,
  result: MetricResult,
): { phase?: AnalysisPhase; message?: string } {
  let phase: AnalysisPhase | undefined;
  let message: string | undefined;
  const failed = result.failed ?? 0;
  const inconclusive = result.inconclusive ?? 0;
  const consecutiveError = result.consecutiveError ?? 0;
  if (failed > failureLimit(metric)) {
    phase = 'Failed';
    message = `failed (${failed}) > failureLimit (${failureLimit(metric)})`;
  }
  if (inconclusive > inconclusiveLimit(metric)) {
    phase = 'Inconclusive';
    message = `inconclusive (${inconclusive}) > inconclusiveLimit (${inconclusiveLimit(metric)})`;
  }
  if (consecutiveError > consecutiveErrorLimit(metric)) {
    phase = 'Error';
    message = `consecutiveErrors (${consecutiveError}) > consecutiveErrorLimit (${consecutiveErrorLimit(metric)})`;
  }
  return { phase, message };
}

/** A metric's phase from its measurements and limits (Argo's assessMetricStatus). */
export function assessMetric(metric: Metric, result: MetricResult, terminating: boolean): AnalysisPhase {
  if (phaseCompleted(result.phase)) return result.phase;
  const last = lastMeasurement(result);
  if (!last) return terminating ? 'Successful' : 'Pending';
  if (!phaseCompleted(last.phase)) return 'Running';
  const exceeded = limitsExceeded(metric, result);
  if (exceeded.phase) return exceeded.phase;
  const count = effectiveCount(metric);
  if (count !== undefined && (result.count ?? 0) >= count) return 'Successful';
  return terminating ? 'Successful' : 'Running';
}

/** Best to worst; the run takes the worst phase of its completed metrics. */
const ORDER: AnalysisPhase[] = ['Successful', 'Running', 'Pending', 'Inconclusive', 'Error', 'Failed'];
export function isWorse(current: AnalysisPhase, next: AnalysisPhase): boolean {
  return ORDER.indexOf(next) > ORDER.indexOf(current);
}

export interface MetricTransition {
  metric: string;
  from: AnalysisPhase;
  to: AnalysisPhase;
}

export interface RunAssessment {
  phase: AnalysisPhase;
  message?: string;
  runSummary: RunSummary;
  dryRunSummary: RunSummary;
  transitions: MetricTransition[];
}

/**
 * Updates every metric's phase (and message) in `status` and returns the run's phase (Argo's
 * assessRunStatus): Running while any metric runs; once all are done (or the run is terminating),
 * the worst phase of the metrics that are not in dry-run, Successful if there are none.
 */
export function assessRun(
  metrics: Metric[],
  status: AnalysisRunStatus,
  dryRun: ReadonlySet<string>,
  terminating: boolean,
  terminateRequested: boolean,
): RunAssessment {
  let worst: AnalysisPhase | undefined;
  let worstMessage = terminateRequested ? 'Run Terminated' : '';
  let everythingCompleted = true;
  const summary = (): Required<RunSummary> => ({
    count: 0,
    successful: 0,
    failed: 0,
    inconclusive: 0,
    error: 0,
  });
  const runSummary = summary();
  const dryRunSummary = summary();
  const transitions: MetricTransition[] = [];
  for (const metric of metrics) {
    const isDry = dryRun.has(metric.name);
    (isDry ? dryRunSummary : runSummary).count++;
    const result = getResult(status, metric.name);
    if (!result) {
      everythingCompleted = false;
      continue;
    }
    const phase = assessMetric(metric, result, terminating);
    if (result.phase !== phase) {
      transitions.push({ metric: metric.name, from: result.phase, to: phase });
      const last = lastMeasurement(result);
      if (last?.message !== undefined) result.message = last.message;
      else delete result.message;
      result.phase = phase;
    }
    if (!phaseCompleted(phase)) {
      everythingCompleted = false;
      continue;
    }
    const exceeded = limitsExceeded(metric, result);
    const bucket = isDry ? dryRunSummary : runSummary;
    switch (exceeded.phase) {
      case 'Error':
        bucket.error++;
        break;
      case 'Failed':
        bucket.failed++;
        break;
      case 'Inconclusive':
        bucket.inconclusive++;
        break;
      default:
        bucket.successful++;
    }
    if (isDry) {
      worst ??= 'Successful';
      if (exceeded.message) result.message = `Metric assessed ${phase} due to ${exceeded.message}`;
      continue;
    }
    if (worst === undefined || isWorse(worst, phase)) {
      worst = phase;
      if (exceeded.message) {
        worstMessage = `Metric "${metric.name}" assessed ${phase} due to ${exceeded.message}`;
        if (result.message) worstMessage += `: "Error Message: ${result.message}"`;
      }
    }
  }
  worstMessage = worstMessage.trim();
  const base = { runSummary, dryRunSummary, transitions };
  if (terminating)
    return { ...base, phase: worst ?? 'Successful', ...(worstMessage ? { message: worstMessage } : {}) };
  if (!everythingCompleted || worst === undefined) return { ...base, phase: 'Running' };
  return { ...base, phase: worst, ...(worstMessage ? { message: worstMessage } : {}) };
}

/** When the run should be looked at again (Argo's calculateNextReconcileTime); undefined: only on events. */
export function nextReconcileTime(
  metrics: Metric[],
  status: AnalysisRunStatus,
  now: number,
  errorRetryMs = DEFAULT_ERROR_RETRY_INTERVAL_MS,
): number | undefined {
  let next: number | undefined;
  const consider = (t: number | undefined) => {
    if (t !== undefined && !Number.isNaN(t) && (next === undefined || t < next)) next = t;
  };
  for (const metric of metrics) {
    const result = getResult(status, metric.name);
    if (phaseCompleted(result?.phase)) continue;
    const last = lastMeasurement(result);
    if (!last) {
      if (metric.initialDelay) {
        const delay = parseDurationMs(metric.initialDelay);
        if (delay !== undefined) consider((ms(status.startedAt) ?? now) + delay);
      }
      continue;
    }
    if (!last.finishedAt) {
      consider(ms(last.resumeAt));
      continue;
    }
    const count = effectiveCount(metric);
    if (count !== undefined && (result?.count ?? 0) >= count) continue;
    const interval = nextInterval(metric, last, errorRetryMs);
    if (interval !== undefined) consider(ms(last.finishedAt)! + interval);
  }
  return next;
}

/**
 * Drops the oldest measurements beyond each metric's limit (measurementRetention, else 10). Returns
 * the metrics that were trimmed, with their limit, so providers can collect what they created.
 */
export function trimMeasurements(
  status: AnalysisRunStatus,
  limits: ReadonlyMap<string, number>,
  defaultLimit = DEFAULT_MEASUREMENT_HISTORY_LIMIT,
): Array<{ metric: string; limit: number }> {
  const trimmed: Array<{ metric: string; limit: number }> = [];
  for (const result of status.metricResults ?? []) {
    const configured = limits.get(result.name);
    const limit = configured !== undefined && configured > 0 ? configured : defaultLimit;
    const list = result.measurements ?? [];
    if (list.length > limit) {
      result.measurements = list.slice(list.length - limit);
      trimmed.push({ metric: result.name, limit });
    }
  }
  return trimmed;
}
