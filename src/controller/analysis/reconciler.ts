// The AnalysisRun reconciler: takes the measurements that are due, counts them against the
// metrics' limits, sets metric and run phases, and asks to be called again exactly when the next
// measurement is due. Everything it knows is in the run's status (each measurement's start and
// finish times, counters, in-flight Jobs), so a restarted controller resumes where the last one
// stopped and never measures twice: status is written with the resourceVersion it was computed
// from, and a stale read fails the write instead of overwriting newer measurements.
//
// Secrets: `valueFrom.secretKeyRef` arguments are read when measuring, substituted only into the
// metric handed to the provider, and redacted from every message, value and log line. Status,
// events and logs only ever see the metric with secrets replaced by "*****".
import { isConflict, isInvalid, isNotFound, PatchType, type KubeClient } from '../../core/kube/client.ts';
import type { Request } from '../../core/kube/objects.ts';
import { resourcePath } from '../../core/kube/objects.ts';
import type { EventRecorder } from '../runtime/events.ts';
import { silentLogger, type Logger } from '../runtime/log.ts';
import {
  assessRun,
  DEFAULT_ERROR_RETRY_INTERVAL_MS,
  dryRunMetrics,
  getResult,
  isTerminating,
  metricTasks,
  nextReconcileTime,
  providerKind,
  retentionLimits,
  trimMeasurements,
  validateMetrics,
  countMeasurement,
  type MetricTask,
  type ProviderKind,
} from './analysis.ts';
import {
  argValuesWithSecrets,
  checkSecretAllowed,
  jobArgValues,
  publicArgValues,
  redact,
  resolveMetric,
  type SecretArgs,
  type SecretPolicy,
} from './args.ts';
import { GitHubWorkflowProvider } from './providers/github-workflow.ts';
import { JobProvider, type Job } from './providers/job.ts';
import { PrometheusProvider } from './providers/prometheus.ts';
import type { Provider, ProviderContext } from './providers/provider.ts';
import { WebProvider } from './providers/web.ts';
import {
  ANALYSIS_RUN,
  phaseCompleted,
  SECRETS,
  type AnalysisPhase,
  type AnalysisRun,
  type AnalysisRunStatus,
  type Measurement,
  type Metric,
  type MetricResult,
} from './types.ts';
import { MAX_TIMER_MS } from '../../core/duration.ts';

export interface AnalysisRunReconcilerOptions {
  client: KubeClient;
  logger?: Logger;
  /** Events on AnalysisRuns: metric and run completions (Argo's reasons). */
  events?: EventRecorder;
  /** Reads a run (the controller reads its informer cache); default: the API. */
  getRun?: (req: Request) => Promise<AnalysisRun | undefined>;
  /** Told of every run written, with its new resourceVersion. */
  onWrite?: (run: AnalysisRun) => void;
  /** Reads a job metric's Job from a cache; default: the API. */
  getJob?: (namespace: string, name: string) => Job | undefined;
  /** The wait after an Error measurement (Argo: 10 s). */
  errorRetryIntervalMs?: number;
  /** For prometheus metrics without an address. */
  defaultPrometheusAddress?: string;
  /** Replaces the built-in providers (tests). */
  providers?: Partial<Record<ProviderKind, Provider>>;
  /** Which Secrets args and tokens may be read from (default any, as Argo). */
  secretPolicy?: SecretPolicy;
  now?: () => Date;
}

export interface ReconcileOptions {
  signal?: AbortSignal;
}

/** The run's spec is unusable: the run ends in Error with this message. */
class RunError extends Error {}

export class AnalysisRunReconciler {
  private readonly o: AnalysisRunReconcilerOptions;
  private readonly providers: Record<ProviderKind, Provider>;
  private readonly log: Logger;

  constructor(options: AnalysisRunReconcilerOptions) {
    this.o = options;
    this.log = options.logger ?? silentLogger;
    this.providers = {
      web: options.providers?.web ?? new WebProvider(),
      prometheus:
        options.providers?.prometheus ??
        new PrometheusProvider({ defaultAddress: options.defaultPrometheusAddress }),
      job: options.providers?.job ?? new JobProvider({ client: options.client, getJob: options.getJob }),
      githubWorkflow:
        options.providers?.githubWorkflow ?? new GitHubWorkflowProvider({ client: options.client }),
    };
  }

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  private get errorRetryMs(): number {
    return this.o.errorRetryIntervalMs ?? DEFAULT_ERROR_RETRY_INTERVAL_MS;
  }

  async reconcile(req: Request, options: ReconcileOptions = {}): Promise<{ requeueAfter?: number }> {
    const signal = options.signal ?? new AbortController().signal;
    const run = await this.getRun(req);
    if (!run || run.metadata.deletionTimestamp) return {};
    // A completed run never changes again (Argo reconciles completed runs no further).
    if (phaseCompleted(run.status?.phase)) return {};
    const log = this.log.child({ analysisRun: `${req.namespace}/${req.name}` });
    const status: AnalysisRunStatus = structuredClone(run.status ?? {});
    status.metricResults ??= [];
    status.startedAt ??= this.now().toISOString();

    let metrics: Metric[];
    let dryRun: Set<string>;
    let retention: Map<string, number>;
    try {
      try {
        const publicValues = publicArgValues(run.spec.args);
        metrics = (run.spec.metrics ?? []).map((m) => resolveMetric(m, publicValues));
      } catch (err) {
        throw new RunError(`Unable to resolve metric arguments: ${(err as Error).message}`);
      }
      const invalid = validateMetrics(metrics);
      if (invalid) throw new RunError(`Analysis spec invalid: ${invalid}`);
      try {
        dryRun = dryRunMetrics(run.spec.dryRun, metrics);
        retention = retentionLimits(run.spec.measurementRetention, metrics);
      } catch (err) {
        throw new RunError(`Analysis spec invalid: ${(err as Error).message}`);
      }
    } catch (err) {
      if (!(err instanceof RunError)) throw err;
      log.warn('analysis run failed validation', { error: err.message });
      return this.finish(run, { ...status, phase: 'Error', message: err.message }, []);
    }

    // Secrets are read at most once per reconcile, and only if a measurement is due.
    let secretArgs: SecretArgs | undefined;
    const secrets = async (): Promise<SecretArgs> =>
      (secretArgs ??= await argValuesWithSecrets(run.spec.args, (name) => this.readSecret(run, name)));

    let terminating = isTerminating(run.spec, status);
    let assessment: ReturnType<typeof assessRun> | undefined;
    // Two passes at most: when this pass ends a metric Failed (or Error, Inconclusive), the run is
    // now terminating, and the second pass ends the in-flight measurements of the other metrics.
    for (let pass = 0; pass < 2; pass++) {
      const tasks = metricTasks(metrics, status, terminating, this.now().getTime(), this.errorRetryMs);
      if (tasks.length) {
        let resolved: SecretArgs;
        try {
          resolved = await secrets();
        } catch (err) {
          if (signal.aborted) throw err;
          const message = `Unable to resolve metric arguments: ${(err as Error).message}`;
          log.warn('analysis run arguments unresolved', { error: message });
          return this.finish(run, { ...status, phase: 'Error', message }, []);
        }
        await Promise.all(
          tasks.map((task) =>
            this.measure(run, status, metrics, task, resolved, dryRun, terminating, signal, log),
          ),
        );
        if (signal.aborted) throw new Error('reconcile aborted');
      }
      assessment = assessRun(metrics, status, dryRun, terminating, run.spec.terminate === true);
      const nowTerminating = isTerminating(run.spec, status);
      if (!nowTerminating || terminating) break;
      terminating = true;
    }
    const a = assessment!;
    for (const t of a.transitions) {
      if (!phaseCompleted(t.to)) continue;
      const warn = t.to === 'Failed' || t.to === 'Error';
      void this.o.events?.record(
        run,
        warn ? 'Warning' : 'Normal',
        `Metric${t.to}`,
        `Metric '${t.metric}' Completed. Result: ${t.to}`,
      );
    }
    if (a.phase !== status.phase) {
      status.phase = a.phase;
      if (a.message) status.message = a.message;
      else delete status.message;
    }
    status.runSummary = a.runSummary;
    status.dryRunSummary = a.dryRunSummary;

    const trimmed = trimMeasurements(status, retention);
    for (const { metric: name, limit } of trimmed) {
      const metric = metrics.find((m) => m.name === name);
      if (!metric) continue;
      const provider = this.providers[providerKind(metric)];
      try {
        await provider.garbageCollect(this.context(run, metric, signal), limit);
      } catch (err) {
        log.warn('could not garbage-collect measurements', { metric: name, error: (err as Error).message });
      }
    }

    const result = await this.finish(run, status, metrics);
    return result;
  }

  /** Writes the status (completing the run if its phase says so) and computes the next wake-up. */
  private async finish(
    run: AnalysisRun,
    status: AnalysisRunStatus,
    metrics: Metric[],
  ): Promise<{ requeueAfter?: number }> {
    const completed = phaseCompleted(status.phase);
    if (completed) {
      status.completedAt ??= this.now().toISOString();
    } else {
      status.phase ??= 'Running';
    }
    const changed = await this.writeStatus(run, status);
    if (changed && completed) {
      const warn = status.phase === 'Failed' || status.phase === 'Error';
      void this.o.events?.record(
        run,
        warn ? 'Warning' : 'Normal',
        `AnalysisRun${status.phase}`,
        `Analysis Completed. Result: ${status.phase}${status.message ? `: ${status.message}` : ''}`,
      );
      this.log.info('analysis run completed', {
        analysisRun: `${run.metadata.namespace}/${run.metadata.name}`,
        phase: status.phase,
        message: status.message,
      });
    }
    if (completed) return {};
    const now = this.now().getTime();
    const next = nextReconcileTime(metrics, status, now, this.errorRetryMs);
    // A long interval (720h) is looked at again within what a Node timer can hold, then re-decided.
    return next === undefined ? {} : { requeueAfter: Math.min(MAX_TIMER_MS, Math.max(1, next - now)) };
  }

  private async measure(
    run: AnalysisRun,
    status: AnalysisRunStatus,
    metrics: Metric[],
    task: MetricTask,
    args: SecretArgs,
    dryRun: ReadonlySet<string>,
    terminating: boolean,
    signal: AbortSignal,
    log: Logger,
  ): Promise<void> {
    const publicMetric = metrics[task.index]!;
    const kind = providerKind(publicMetric);
    const provider = this.providers[kind];
    let measurement: Measurement;
    let ctx: ProviderContext;
    try {
      if (kind === 'job') {
        // A Job is an object others may read: secrets go in as references, never as values.
        const job = jobArgValues(run.spec.args, args.values);
        ctx = {
          ...this.context(run, resolveMetric(run.spec.metrics[task.index]!, job.values), signal),
          secretEnv: job.env,
        };
      } else ctx = this.context(run, resolveMetric(run.spec.metrics[task.index]!, args.values), signal);
    } catch (err) {
      measurement = {
        ...(task.incomplete ?? { startedAt: this.now().toISOString() }),
        phase: 'Error',
        message: `Unable to resolve metric arguments: ${(err as Error).message}`,
        finishedAt: this.now().toISOString(),
      };
      this.record(status, publicMetric, provider, measurement, task, dryRun, args.secrets, log);
      return;
    }
    if (!task.incomplete) measurement = await provider.run(ctx);
    else if (terminating) {
      measurement = await provider.terminate(ctx, task.incomplete);
      if (measurement.phase === 'Successful') measurement.message = 'Metric Terminated';
    } else measurement = await provider.resume(ctx, task.incomplete);
    this.record(status, publicMetric, provider, measurement, task, dryRun, args.secrets, log);
  }

  private record(
    status: AnalysisRunStatus,
    metric: Metric,
    provider: Provider,
    measurement: Measurement,
    task: MetricTask,
    dryRun: ReadonlySet<string>,
    secrets: string[],
    log: Logger,
  ): void {
    let result: MetricResult | undefined = getResult(status, metric.name);
    if (!result) {
      result = {
        name: metric.name,
        phase: 'Running',
        ...(dryRun.has(metric.name) ? { dryRun: true } : {}),
        count: 0,
        successful: 0,
        failed: 0,
        inconclusive: 0,
        error: 0,
        consecutiveError: 0,
      };
      const metadata = provider.metadata?.(metric);
      if (metadata) result.metadata = metadata;
      status.metricResults!.push(result);
    }
    const m: Measurement = { ...measurement };
    if (phaseCompleted(m.phase)) {
      m.finishedAt ??= this.now().toISOString();
      countMeasurement(result, m.phase);
    }
    if (m.message !== undefined) m.message = redact(m.message, secrets);
    if (m.value !== undefined) m.value = redact(m.value, secrets);
    if (m.phase === 'Error') log.warn('measurement had an error', { metric: metric.name, error: m.message });
    else if (phaseCompleted(m.phase))
      log.debug('measurement completed', { metric: metric.name, phase: m.phase });
    result.measurements ??= [];
    if (task.incomplete && result.measurements.length)
      result.measurements[result.measurements.length - 1] = m;
    else result.measurements.push(m);
  }

  private context(run: AnalysisRun, metric: Metric, signal: AbortSignal): ProviderContext {
    return { run, metric, signal, now: () => this.now() };
  }

  private async getRun(req: Request): Promise<AnalysisRun | undefined> {
    if (this.o.getRun) return this.o.getRun(req);
    try {
      return await this.o.client.get<AnalysisRun>(ANALYSIS_RUN, req.namespace, req.name);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private async readSecret(run: AnalysisRun, name: string): Promise<Record<string, string> | undefined> {
    let secret: { metadata?: { labels?: Record<string, string> }; data?: Record<string, string> };
    try {
      secret = await this.o.client.get(SECRETS, run.metadata.namespace ?? '', name);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    checkSecretAllowed(this.o.secretPolicy ?? 'any', secret, `${run.metadata.namespace}/${name}`);
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(secret.data ?? {}))
      out[k] = Buffer.from(v, 'base64').toString('utf8');
    return out;
  }

  /**
   * Replaces the status whole (a merge patch would keep fields dropped here), only if it changed,
   * and only if the run is still at the resourceVersion it was read at: otherwise the write fails
   * with a conflict and the reconcile is retried from fresh state. Returns whether it wrote.
   */
  private async writeStatus(run: AnalysisRun, status: AnalysisRunStatus): Promise<boolean> {
    if (JSON.stringify(status) === JSON.stringify(run.status ?? {})) return false;
    const ops: unknown[] = [];
    if (run.metadata.resourceVersion) {
      ops.push({ op: 'test', path: '/metadata/resourceVersion', value: run.metadata.resourceVersion });
    }
    ops.push({ op: 'add', path: '/status', value: status });
    try {
      const written = await this.o.client.request<AnalysisRun>(
        'PATCH',
        resourcePath(ANALYSIS_RUN, run.metadata.namespace ?? '', run.metadata.name, 'status'),
        { body: ops, contentType: PatchType.json },
      );
      this.o.onWrite?.(written);
      return true;
    } catch (err) {
      // A failed `test` is a 422 like a schema violation: tell them apart by the current version.
      if (
        isConflict(err) ||
        (isInvalid(err) && (await this.currentVersion(run)) !== run.metadata.resourceVersion)
      ) {
        throw new Error(
          `analysis run ${run.metadata.namespace}/${run.metadata.name} changed since it was read; retrying`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  private async currentVersion(run: AnalysisRun): Promise<string | undefined> {
    try {
      const live = await this.o.client.get<AnalysisRun>(
        ANALYSIS_RUN,
        run.metadata.namespace ?? '',
        run.metadata.name ?? '',
      );
      return live.metadata.resourceVersion;
    } catch {
      return undefined;
    }
  }
}

/** The phase a caller (the Rollout controller) acts on; undefined while the run has none. */
export function runPhase(run: AnalysisRun | undefined): AnalysisPhase | undefined {
  return run?.status?.phase;
}
