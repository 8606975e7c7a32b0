// Wires the AnalysisRun reconciler into a Manager: the AnalysisRun informer (creations, spec
// changes such as terminate, deletions; not the reconciler's own status writes, whose follow-up
// is a timed requeue) and the job metrics' Jobs, which wake the run that owns them.
import type { SecretPolicy } from './args.ts';
import { enqueueOwner, type Controller, type Predicate } from '../runtime/controller.ts';
import type { Manager } from '../runtime/manager.ts';
import type { KubeObject } from '../../core/kube/objects.ts';
import { OwnWrites } from '../runtime/own-writes.ts';
import type { Job } from './providers/job.ts';
import { AnalysisRunReconciler } from './reconciler.ts';
import { ANALYSIS_RUN, API_VERSION, JOB_RUN_UID_LABEL, JOBS, type AnalysisRun } from './types.ts';

export interface AnalysisControllerOptions {
  /** Watch AnalysisRuns (and Jobs) in this namespace only; empty: all namespaces. */
  namespace?: string;
  /** Default 30, as Argo Rollouts' analysis threads. */
  maxConcurrentReconciles?: number;
  errorRetryIntervalMs?: number;
  defaultPrometheusAddress?: string;
  /** Which Secrets analysis may read (args.ts SecretPolicy; default any). */
  secretPolicy?: SecretPolicy;
}

export interface AnalysisController {
  controller: Controller;
  reconciler: AnalysisRunReconciler;
}

function runChanged(): Predicate<AnalysisRun> {
  return {
    update: (oldRun, newRun, info) =>
      info.resync ||
      oldRun.metadata.generation !== newRun.metadata.generation ||
      (newRun.metadata.deletionTimestamp !== undefined && oldRun.metadata.deletionTimestamp === undefined),
  };
}

/** Job changes that matter: its conditions (completion, failure) and its deletion. */
function jobChanged(): Predicate<Job> {
  return {
    update: (oldJob, newJob, info) =>
      info.resync || JSON.stringify(oldJob.status?.conditions) !== JSON.stringify(newJob.status?.conditions),
  };
}

export function setupAnalysisController(
  manager: Manager,
  options: AnalysisControllerOptions = {},
): AnalysisController {
  const client = manager.client;
  const namespace = options.namespace ?? '';
  // Without managedFields, which nothing here reads; the Rollout controller shares the runs'.
  const runs = manager.informer<AnalysisRun & KubeObject>(ANALYSIS_RUN, {
    namespace,
    dropManagedFields: true,
  });
  const jobs = manager.informer<Job>(JOBS, {
    namespace,
    labelSelector: JOB_RUN_UID_LABEL,
    dropManagedFields: true,
  });
  const events = manager.eventRecorder('kube-actions.dev/analysis-controller');

  // The cache may lag behind our own last write; then the API is asked, so a measurement is never
  // taken twice because the cache had not seen the one just recorded.
  const ownWrites = new OwnWrites<AnalysisRun & KubeObject>(runs, client, ANALYSIS_RUN);

  const reconciler = new AnalysisRunReconciler({
    client,
    logger: manager.logger.child({ controller: 'analysis' }),
    events,
    getRun: (req) => ownWrites.get(req.namespace, req.name),
    onWrite: (run) => ownWrites.wrote(run),
    getJob: (ns, name) => jobs.get(ns, name),
    errorRetryIntervalMs: options.errorRetryIntervalMs,
    defaultPrometheusAddress: options.defaultPrometheusAddress,
    ...(options.secretPolicy ? { secretPolicy: options.secretPolicy } : {}),
  });

  const controller = manager.controller({
    name: 'analysisrun',
    reconciler: { reconcile: (req, ctx) => reconciler.reconcile(req, { signal: ctx.signal }) },
    maxConcurrentReconciles: options.maxConcurrentReconciles ?? 30,
  });
  controller.watch(runs, undefined, runChanged());
  controller.watch(jobs, enqueueOwner<Job>({ apiVersion: API_VERSION, kind: 'AnalysisRun' }), jobChanged());
  return { controller, reconciler };
}
