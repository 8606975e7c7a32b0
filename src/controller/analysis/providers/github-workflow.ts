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
import {
  describeFailure,
  dispatchWorkflow,
  runStatus,
  type DispatchTarget,
} from '../../../core/github/dispatch.ts';
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

/** The run a measurement started (its metadata), if it names one. */
function runIdOf(m: Measurement): number | undefined {
  const id = Number(m.metadata?.[RUN_ID_KEY]);
  return Number.isSafeInteger(id) && id > 0 ? id : undefined;
}

export class GitHubWorkflowProvider implements Provider {
  private readonly o: GitHubWorkflowProviderOptions;

  constructor(options: GitHubWorkflowProviderOptions) {
    this.o = options;
  }

  async run(ctx: ProviderContext): Promise<Measurement> {
    const m: Measurement = { phase: 'Running', startedAt: ctx.now().toISOString() };
    const spec = ctx.metric.provider.githubWorkflow!;
    return this.withRepository(ctx, m, 'the workflow run', async (target) => {
      const dispatched = await dispatchWorkflow({
        ...target,
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
    });
  }

  async resume(ctx: ProviderContext, measurement: Measurement): Promise<Measurement> {
    const runId = runIdOf(measurement);
    if (runId === undefined)
      return errorMeasurement(measurement, new Error('workflow run reference missing'), ctx.now());
    return this.withRepository(ctx, measurement, 'the workflow run', async (target) => {
      const run = await runStatus(target, runId);
      const now = ctx.now();
      if (run.status !== 'completed') {
        const elapsed = now.getTime() - Date.parse(measurement.startedAt ?? now.toISOString());
        return { ...measurement, resumeAt: new Date(now.getTime() + resumeDelayMs(elapsed)).toISOString() };
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
    });
  }

  async terminate(ctx: ProviderContext, measurement: Measurement): Promise<Measurement> {
    const runId = runIdOf(measurement);
    const { resumeAt: _stop, ...rest } = measurement;
    if (runId === undefined)
      return errorMeasurement(rest, new Error('workflow run reference missing'), ctx.now());
    return this.withRepository(ctx, rest, 'cancelling the workflow run', async ({ octokit, owner, repo }) => {
      await octokit.rest.actions.cancelWorkflowRun({ owner, repo, run_id: runId }).catch((err: unknown) => {
        // 409: the run completed meanwhile; nothing left to cancel.
        if (httpStatus(err) !== 409) throw err;
      });
      return { ...rest, phase: 'Successful', finishedAt: ctx.now().toISOString() };
    });
  }

  garbageCollect(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Runs `act` against the metric's repository with a client holding the token read now; any
   * failure becomes an Error measurement (based on `m`) saying what failed, without the token.
   */
  private async withRepository(
    ctx: ProviderContext,
    m: Measurement,
    what: string,
    act: (target: DispatchTarget) => Promise<Measurement>,
  ): Promise<Measurement> {
    const spec = ctx.metric.provider.githubWorkflow!;
    let token: string | undefined;
    try {
      token = await this.token(ctx, spec);
      return await act({ octokit: this.octokit(spec, token), ...parseRepository(spec.repository) });
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      return this.failed(m, err, ctx, token, what);
    }
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
    what: string,
  ): Measurement {
    const message =
      err instanceof TokenError || !httpStatus(err)
        ? (err as Error).message
        : describeFailure(what, err, 'actions: write');
    return errorMeasurement(m, new Error(redact(message, [token])), ctx.now());
  }
}
