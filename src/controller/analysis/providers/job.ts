// The job metric (Argo's job provider): each measurement is a Job made from the metric's job spec,
// owned by the AnalysisRun (so deleting the run deletes its Jobs) and labelled with the run's uid.
// The measurement stays Running until the Job has the Complete condition (Successful) or the
// Failed condition (Failed); the Jobs' watch wakes the run. A terminating run deletes its
// in-flight Job, and Jobs beyond the measurement retention limit are deleted.
import { createHash } from 'node:crypto';
import { isConflict, isNotFound, type KubeClient } from '../../../core/kube/client.ts';
import type { KubeObject, ObjectMeta } from '../../../core/kube/objects.ts';
import { resourcePath } from '../../../core/kube/objects.ts';
import {
  API_VERSION,
  JOB_METRIC_ANNOTATION,
  JOB_NAME_KEY,
  JOB_RUN_NAME_ANNOTATION,
  JOB_RUN_UID_LABEL,
  JOBS,
  type AnalysisRun,
  type Measurement,
} from '../types.ts';
import { getResult } from '../analysis.ts';
import { errorMeasurement, type Provider, type ProviderContext } from './provider.ts';

export interface Job extends KubeObject {
  metadata: ObjectMeta & { creationTimestamp?: string };
  spec?: Record<string, unknown>;
  status?: { conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> };
}

export interface JobProviderOptions {
  client: KubeClient;
  /** Reads a Job from a cache (the controller's informer); missing there, the API is asked. */
  getJob?: (namespace: string, name: string) => Job | undefined;
}

function dnsPart(s: string, max: number): string {
  const clean = s
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, max)
    .replace(/-+$/, '');
  return clean || 'x';
}

/**
 * The Job of a run's metric's n-th measurement: stable (a retried create finds the same Job),
 * unique per run uid, and short enough for the job-name label Kubernetes puts on its Pods.
 */
export function jobName(run: AnalysisRun, metricName: string, n: number): string {
  const hash = createHash('sha256')
    .update(`${run.metadata.uid ?? run.metadata.name}/${metricName}`)
    .digest('hex')
    .slice(0, 8);
  return `${dnsPart(run.metadata.name ?? 'run', 28)}-${dnsPart(metricName, 14)}-${hash}-${n}`;
}

export class JobProvider implements Provider {
  private readonly o: JobProviderOptions;

  constructor(options: JobProviderOptions) {
    this.o = options;
  }

  async run(ctx: ProviderContext): Promise<Measurement> {
    const { run, metric } = ctx;
    const m: Measurement = { phase: 'Running', startedAt: ctx.now().toISOString() };
    const result = getResult(run.status ?? {}, metric.name);
    const n = (result?.count ?? 0) + (result?.error ?? 0) + 1;
    const name = jobName(run, metric.name, n);
    const jobSpec = metric.provider.job!;
    const job: Job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: {
        name,
        namespace: run.metadata.namespace,
        labels: { ...jobSpec.metadata?.labels, [JOB_RUN_UID_LABEL]: run.metadata.uid ?? '' },
        annotations: {
          ...jobSpec.metadata?.annotations,
          [JOB_RUN_NAME_ANNOTATION]: run.metadata.name ?? '',
          [JOB_METRIC_ANNOTATION]: metric.name,
        },
        ownerReferences: [
          {
            apiVersion: API_VERSION,
            kind: 'AnalysisRun',
            name: run.metadata.name ?? '',
            uid: run.metadata.uid ?? '',
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: ctx.secretEnv?.length ? withEnv(jobSpec.spec, ctx.secretEnv) : jobSpec.spec,
    };
    try {
      try {
        await this.o.client.create(JOBS, job);
      } catch (err) {
        if (!isConflict(err)) throw err;
        // Created by an earlier attempt whose status write was lost: adopt it if it is ours.
        const existing = await this.o.client.get<Job>(JOBS, run.metadata.namespace ?? '', name);
        const owner = existing.metadata.ownerReferences?.find((r) => r.controller);
        if (owner?.uid !== run.metadata.uid) {
          throw new Error(`job ${name} already exists and is not owned by this run`, { cause: err });
        }
      }
      return { ...m, metadata: { [JOB_NAME_KEY]: name } };
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      return errorMeasurement(
        m,
        new Error(`job create ${name} failed: ${(err as Error).message}`),
        ctx.now(),
      );
    }
  }

  async resume(ctx: ProviderContext, measurement: Measurement): Promise<Measurement> {
    const name = measurement.metadata?.[JOB_NAME_KEY];
    if (!name) return errorMeasurement(measurement, new Error('job metadata reference missing'), ctx.now());
    const namespace = ctx.run.metadata.namespace ?? '';
    let job = this.o.getJob?.(namespace, name);
    if (!job) {
      try {
        job = await this.o.client.get<Job>(JOBS, namespace, name);
      } catch (err) {
        if (ctx.signal.aborted) throw err;
        const reason = isNotFound(err) ? `job ${name} not found` : `job ${name}: ${(err as Error).message}`;
        return errorMeasurement(measurement, new Error(reason), ctx.now());
      }
    }
    for (const c of job.status?.conditions ?? []) {
      if (c.status !== 'True') continue;
      if (c.type === 'Complete') {
        return { ...measurement, phase: 'Successful', finishedAt: ctx.now().toISOString() };
      }
      if (c.type === 'Failed') {
        return {
          ...measurement,
          phase: 'Failed',
          finishedAt: ctx.now().toISOString(),
          ...(c.message || c.reason ? { message: `job ${name} failed: ${c.message || c.reason}` } : {}),
        };
      }
    }
    return measurement;
  }

  async terminate(ctx: ProviderContext, measurement: Measurement): Promise<Measurement> {
    const name = measurement.metadata?.[JOB_NAME_KEY];
    if (!name) return errorMeasurement(measurement, new Error('job metadata reference missing'), ctx.now());
    try {
      await this.deleteJob(ctx.run.metadata.namespace ?? '', name);
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      return errorMeasurement(measurement, err, ctx.now());
    }
    return { ...measurement, phase: 'Successful', finishedAt: ctx.now().toISOString() };
  }

  /** Deletes this metric's oldest Jobs beyond `limit`. */
  async garbageCollect(ctx: ProviderContext, limit: number): Promise<void> {
    const namespace = ctx.run.metadata.namespace ?? '';
    const list = await this.o.client.request<{ items: Job[] }>('GET', resourcePath(JOBS, namespace), {
      query: { labelSelector: `${JOB_RUN_UID_LABEL}=${ctx.run.metadata.uid ?? ''}` },
    });
    const jobs = list.items
      .filter((j) => j.metadata.annotations?.[JOB_METRIC_ANNOTATION] === ctx.metric.name)
      .filter((j) => !j.metadata.deletionTimestamp)
      .sort((a, b) => ordinal(a) - ordinal(b));
    for (const job of jobs.slice(0, Math.max(0, jobs.length - limit))) {
      await this.deleteJob(namespace, job.metadata.name!);
    }
  }

  private async deleteJob(namespace: string, name: string): Promise<void> {
    try {
      await this.o.client.delete(JOBS, namespace, name, { propagationPolicy: 'Foreground' });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}

/** A Job's measurement number (the name's suffix), falling back to its creation time. */
function ordinal(job: Job): number {
  const n = /-(\d+)$/.exec(job.metadata.name ?? '');
  return n ? Number(n[1]) : Date.parse(job.metadata.creationTimestamp ?? '') || 0;
}

/** The Job spec with `env` added to every container and init container of its pod template. */
function withEnv(
  spec: Record<string, unknown>,
  env: NonNullable<ProviderContext['secretEnv']>,
): Record<string, unknown> {
  const out = structuredClone(spec);
  const pod = (out.template as { spec?: Record<string, unknown> } | undefined)?.spec;
  for (const list of [pod?.containers, pod?.initContainers]) {
    if (!Array.isArray(list)) continue;
    for (const c of list as { env?: unknown[] }[]) {
      const own = (c.env ?? []).filter(
        (e) => !env.some((s) => s.name === (e as { name?: string } | null)?.name),
      );
      // First, so that the container's own env values can use $(VAR) too.
      c.env = [...env, ...own];
    }
  }
  return out;
}
