// The githubWorkflow metric: each measurement dispatches a workflow_dispatch workflow (a smoke or
// load test kept beside the application's code) and waits for its run. The run's conclusion is the
// measurement's value ("success", "failure", "cancelled", ...), Successful by default only for
// "success" (as `successCondition: result == "success"`), and the run's id and page are in the
// measurement's metadata. Inputs may use `{{args.*}}` (the canary's pod-template hash, a preview
// Service's address), substituted before they reach this file.
//
// No peer has it: with Argo Rollouts a workflow is started from a job metric running curl, which
// neither finds the run it started nor waits for it. Dispatching goes through the same core as the
// dispatch action (src/core/github/dispatch.ts): inputs checked against the workflow first, the run
// found by return_run_details (or without guessing on older servers), rate limits honoured.
//
// The token is read from a Secret in the AnalysisRun's namespace (`tokenSecretRef`: name, key
// default "token") at each dispatch, poll and cancel, so a rotated token takes effect; it is never
// written to the run's status. In flight, the measurement is looked at again at `resumeAt` (5 s,
// then 15 s after a minute, 30 s after five), one request each time; a terminating AnalysisRun
// (aborted Rollout, promote --full) cancels the workflow run.
import { isNotFound, type KubeClient } from '../../../core/kube/client.ts';
import { resourcePath } from '../../../core/kube/objects.ts';
import { createGitHubClient, httpStatus, parseRepository, redact } from '../../../core/github/client.ts';
import { describeFailure, dispatchWorkflow, runStatus } from '../../../core/github/dispatch.ts';
import { checkSecretAllowed, type SecretPolicy } from '../args.ts';
import { evaluateConditions } from '../expression.ts';
import type { GitHubWorkflowMetric, Measurement } from '../types.ts';
import { errorMeasurement, type Provider, type ProviderContext } from './provider.ts';

export const RUN_ID_KEY = 'runId';
export const RUN_URL_KEY = 'runUrl';
const DEFAULT_SUCCESS = 'result == "success"';

export interface GitHubWorkflowProviderOptions {
  /** Reads the token's Secret. */
  client: KubeClient;
  /** Scales server-given waits (tests; see GitHubClientOptions.secondMs). */
  secondMs?: number;
  /** How long to look for the run when the server does not return it (default 60 s). */
  findTimeoutMs?: number;
  /** Which Secrets the token may come from (see args.ts SecretPolicy; default any). */
  secretPolicy?: SecretPolicy;
}

/** When an in-flight run is looked at again, by how long it has been running. */
export function resumeDelayMs(elapsedMs: number): number {
  if (elapsedMs < 60_000) return 5_000;
  if (elapsedMs < 300_000) return 15_000;
  return 30_000;
}

class TokenError extends Error {}

export class GitHubWorkflowProvider implements Provider {
  private readonly o: GitHubWorkflowProviderOptions;

  constructor(options: GitHubWorkflowProviderOptions) {
    this.o = options;
  }

  async run(ctx: ProviderContext): Promise<Measurement> {
    const m: Measurement = { phase: 'Running', startedAt: ctx.now().toISOString() };
    const spec = ctx.metric.provider.githubWorkflow!;
    let token: string | undefined;
    try {
      token = await this.token(ctx, spec);
      const { owner, repo } = parseRepository(spec.repository);
      const dispatched = await dispatchWorkflow({
        octokit: this.octokit(spec, token),
        owner,
        repo,
        workflow: spec.workflow,
        ...(spec.ref ? { ref: spec.ref } : {}),
        inputs: Object.fromEntries(Object.entries(spec.inputs ?? {}).map(([k, v]) => [k, String(v)])),
        findTimeoutMs: this.o.findTimeoutMs ?? 60_000,
      });
      return {
        ...m,
        metadata: { [RUN_ID_KEY]: String(dispatched.runId), [RUN_URL_KEY]: dispatched.htmlUrl },
        resumeAt: new Date(ctx.now().getTime() + resumeDelayMs(0)).toISOString(),
      };
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      return this.failed(m, err, ctx, token);
    }
  }

  async resume(ctx: ProviderContext, measurement: Measurement): Promise<Measurement> {
    const spec = ctx.metric.provider.githubWorkflow!;
    const runId = Number(measurement.metadata?.[RUN_ID_KEY]);
    if (!Number.isSafeInteger(runId) || runId <= 0)
      return errorMeasurement(measurement, new Error('workflow run reference missing'), ctx.now());
    let token: string | undefined;
    try {
      token = await this.token(ctx, spec);
      const { owner, repo } = parseRepository(spec.repository);
      const run = await runStatus({ octokit: this.octokit(spec, token), owner, repo }, runId);
      const now = ctx.now();
      if (run.status !== 'completed') {
        const elapsed = now.getTime() - Date.parse(measurement.startedAt ?? now.toISOString());
        return {
          ...measurement,
          resumeAt: new Date(now.getTime() + resumeDelayMs(elapsed)).toISOString(),
        };
      }
      const conclusion = run.conclusion ?? 'unknown';
      const conditions = {
        successCondition:
          ctx.metric.successCondition ?? (ctx.metric.failureCondition ? undefined : DEFAULT_SUCCESS),
        ...(ctx.metric.failureCondition ? { failureCondition: ctx.metric.failureCondition } : {}),
      };
      const { resumeAt: _done, ...rest } = measurement;
      return {
        ...rest,
        phase: evaluateConditions(conditions, conclusion),
        value: conclusion,
        finishedAt: now.toISOString(),
      };
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      return this.failed(measurement, err, ctx, token);
    }
  }

  async terminate(ctx: ProviderContext, measurement: Measurement): Promise<Measurement> {
    const spec = ctx.metric.provider.githubWorkflow!;
    const runId = Number(measurement.metadata?.[RUN_ID_KEY]);
    const { resumeAt: _stop, ...rest } = measurement;
    if (!Number.isSafeInteger(runId) || runId <= 0)
      return errorMeasurement(rest, new Error('workflow run reference missing'), ctx.now());
    let token: string | undefined;
    try {
      token = await this.token(ctx, spec);
      const { owner, repo } = parseRepository(spec.repository);
      await this.octokit(spec, token)
        .rest.actions.cancelWorkflowRun({ owner, repo, run_id: runId })
        .catch((err: unknown) => {
          // 409: the run completed meanwhile; nothing left to cancel.
          if (httpStatus(err) !== 409) throw err;
        });
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      return this.failed(rest, err, ctx, token, 'cancelling the workflow run');
    }
    return { ...rest, phase: 'Successful', finishedAt: ctx.now().toISOString() };
  }

  garbageCollect(): Promise<void> {
    return Promise.resolve();
  }

  private octokit(spec: GitHubWorkflowMetric, token: string) {
    return createGitHubClient({
      token,
      ...(spec.apiURL ? { apiURL: spec.apiURL } : {}),
      ...(this.o.secondMs ? { secondMs: this.o.secondMs } : {}),
    });
  }

  private async token(ctx: ProviderContext, spec: GitHubWorkflowMetric): Promise<string> {
    const ref = spec.tokenSecretRef;
    if (!ref?.name) throw new TokenError('githubWorkflow.tokenSecretRef.name is required');
    const key = ref.key ?? 'token';
    const namespace = ctx.run.metadata.namespace ?? '';
    let secret: { metadata?: { labels?: Record<string, string> }; data?: Record<string, string> };
    try {
      secret = await this.o.client.request(
        'GET',
        resourcePath({ apiVersion: 'v1', resource: 'secrets' }, namespace, ref.name),
        {
          signal: ctx.signal,
        },
      );
    } catch (err) {
      if (isNotFound(err)) throw new TokenError(`secret ${namespace}/${ref.name} not found`);
      throw err;
    }
    try {
      checkSecretAllowed(this.o.secretPolicy ?? 'any', secret, `${namespace}/${ref.name}`);
    } catch (err) {
      throw new TokenError((err as Error).message);
    }
    const value = secret.data?.[key];
    if (!value) throw new TokenError(`secret ${namespace}/${ref.name} has no key "${key}"`);
    return Buffer.from(value, 'base64').toString('utf8').trim();
  }

  /** An Error measurement saying what failed, with no trace of the token. */
  private failed(
    m: Measurement,
    err: unknown,
    ctx: ProviderContext,
    token: string | undefined,
    what = 'the workflow run',
  ): Measurement {
    const message =
      err instanceof TokenError || !httpStatus(err)
        ? (err as Error).message
        : describeFailure(what, err, 'actions: write');
    return errorMeasurement(m, new Error(redact(message, [token])), ctx.now());
  }
}
