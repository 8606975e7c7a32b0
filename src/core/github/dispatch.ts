// Dispatching a workflow_dispatch run and waiting for it, for the dispatch action and CLI.
//
// 1. Read the target workflow at the ref (contents API) and check the inputs against its
//    on.workflow_dispatch.inputs before anything is started.
// 2. Dispatch with return_run_details: true, so GitHub answers with the run's id. A server that
//    refuses the field (GitHub Enterprise Server before 3.21) gets the dispatch again without it,
//    and the run is found without guessing (see run-match.ts): by a unique value in a distinct-id
//    input the run-name shows, or as the only new workflow_dispatch run of that workflow on the
//    ref; anything else is an error that says it is ambiguous.
// 3. Wait: one request per poll, with a backoff from 2 s to 30 s that the rate-limit headers can
//    stretch; the jobs endpoint while jobs run (their changes are logged as they happen), the run
//    itself when they are all done or none exist yet. On timeout the run is cancelled.
import { randomUUID } from 'node:crypto';
import { apiMessage, httpStatus, type GitHubClient, type GitHubRepo } from './client.ts';
import {
  nextBackoff,
  pollDelay,
  rateLimitFromHeaders,
  realClock,
  formatDuration,
  type BackoffOptions,
  type Clock,
  type RateLimitState,
} from './poll.ts';
import { diffJobs, type JobView } from './run-jobs.ts';
import { decide, matchRuns, shortRef, type RunCandidate } from './run-match.ts';
import {
  distinctIdInput,
  inputProblems,
  MAX_INPUTS,
  inputsPayloadLength,
  MAX_INPUTS_PAYLOAD,
  parseWorkflowDispatch,
  WorkflowInputError,
} from './workflow-inputs.ts';

export class DispatchError extends Error {
  override name = 'DispatchError';
}

/** The fallback found more than one run that could be this dispatch's. */
export class AmbiguousRunError extends DispatchError {
  override name = 'AmbiguousRunError';
  readonly runs: { id: number; url: string }[];
  constructor(message: string, runs: { id: number; url: string }[]) {
    super(message);
    this.runs = runs;
  }
}

export interface DispatchLog {
  info(message: string): void;
  warning(message: string): void;
  /** What one poll showed of one job: a title and the steps that moved (the action folds them into a group). */
  job(title: string, lines: string[]): void;
}

const SILENT: DispatchLog = { info: () => undefined, warning: () => undefined, job: () => undefined };

export interface DispatchTarget extends GitHubRepo {
  octokit: GitHubClient;
}

export interface DispatchOptions extends DispatchTarget {
  /** A workflow file name (`deploy.yml`), its path (`.github/workflows/deploy.yml`) or its numeric id. */
  workflow: string;
  /** Branch or tag (`main`, `refs/heads/main`, `v1.2.0`); default: the repository's default branch. */
  ref?: string;
  /** Input values as GitHub takes them: strings. */
  inputs?: Record<string, string>;
  clock?: Clock;
  log?: DispatchLog;
  /** Pacing of the run search and of the wait (default 2 s growing to 30 s). */
  poll?: BackoffOptions;
  /** How long the fallback looks for the run before giving up (default 120 s). */
  findTimeoutMs?: number;
  /** The unique value for a distinct-id input (default a random UUID). */
  newDistinctId?: () => string;
}

export type FoundBy = 'return_run_details' | 'distinct_id' | 'only-candidate';

export interface DispatchedRun {
  runId: number;
  /** The run's page. */
  htmlUrl: string;
  /** The run's API URL. */
  apiUrl: string;
  /** The workflow file's path in the repository. */
  workflowPath: string;
  /** The ref as dispatched. */
  ref: string;
  /** The inputs sent (including a generated distinct id). */
  inputs: Record<string, string>;
  foundBy: FoundBy;
  distinctId?: { input: string; value: string };
  /** When the dispatch was sent (the clock's time), for the wait's deadline. */
  dispatchedAtMs: number;
}

interface Workflow {
  /** What the API takes as workflow_id: the file name or the numeric id. */
  id: string;
  path: string;
  text: string;
  /** The server's time when the file was read (epoch ms), from the Date header. */
  serverTimeMs?: number;
}

/** A failed request, for a person: what was attempted, GitHub's reason, and what to check. */
export function describeFailure(what: string, err: unknown, permission: string): string {
  const status = httpStatus(err);
  const hint =
    status === 401
      ? 'the token was rejected (expired or invalid)'
      : status === 403 || status === 429
        ? /rate limit/i.test(apiMessage(err))
          ? `${apiMessage(err)} (still limited after the retries)`
          : `${apiMessage(err)}; the token needs ${permission}`
        : status === 404
          ? `not found, or the token cannot see it (it needs ${permission})`
          : apiMessage(err);
  return `${what} failed${status ? ` (HTTP ${status})` : ''}: ${hint}`;
}

function serverTime(headers: Record<string, unknown>): number | undefined {
  const t = typeof headers.date === 'string' ? Date.parse(headers.date) : NaN;
  return Number.isNaN(t) ? undefined : t;
}

async function resolveRef(target: DispatchTarget, ref: string | undefined): Promise<string> {
  if (ref) return ref;
  const { data } = await target.octokit.rest.repos
    .get({ owner: target.owner, repo: target.repo })
    .catch((err: unknown) => {
      throw new DispatchError(
        describeFailure(
          `reading ${target.owner}/${target.repo} for its default branch`,
          err,
          'metadata: read',
        ),
      );
    });
  return data.default_branch;
}

async function readWorkflow(target: DispatchTarget, workflow: string, ref: string): Promise<Workflow> {
  const { octokit, owner, repo } = target;
  const where = `${owner}/${repo}`;
  let id: string;
  let path: string;
  if (/^\d+$/.test(workflow)) {
    const { data } = await octokit.rest.actions
      .getWorkflow({ owner, repo, workflow_id: Number(workflow) })
      .catch((err: unknown) => {
        throw new DispatchError(
          describeFailure(`reading workflow ${workflow} of ${where}`, err, 'actions: read'),
        );
      });
    id = workflow;
    path = data.path;
  } else {
    path = workflow.includes('/') ? workflow.replace(/^\.?\//, '') : `.github/workflows/${workflow}`;
    if (!/^\.github\/workflows\/[^/]+\.ya?ml$/.test(path)) {
      throw new DispatchError(
        `workflow must be a file name in .github/workflows (deploy.yml), its path or its numeric id, got "${workflow}"`,
      );
    }
    id = path.slice('.github/workflows/'.length);
  }
  const response = await octokit.rest.repos.getContent({ owner, repo, path, ref }).catch((err: unknown) => {
    if (httpStatus(err) === 404) {
      throw new DispatchError(
        `workflow ${path} not found at ref "${ref}" of ${where} (or the token cannot read it)`,
      );
    }
    throw new DispatchError(describeFailure(`reading ${path} at ${ref} of ${where}`, err, 'contents: read'));
  });
  const file = response.data;
  if (Array.isArray(file) || file.type !== 'file' || !('content' in file)) {
    throw new DispatchError(`${path} at ${ref} of ${where} is not a file`);
  }
  if (file.encoding !== 'base64') {
    throw new DispatchError(
      `${path} at ${ref} of ${where} is too large to read through the API (${file.size} bytes)`,
    );
  }
  const serverTimeMs = serverTime(response.headers);
  return {
    id,
    path,
    text: Buffer.from(file.content, 'base64').toString('utf8'),
    ...(serverTimeMs !== undefined ? { serverTimeMs } : {}),
  };
}

/** Whether a dispatch was refused because the server does not know return_run_details. */
export function rejectsRunDetails(err: unknown): boolean {
  const status = httpStatus(err);
  return (status === 400 || status === 422) && /return_run_details/i.test(apiMessage(err));
}

/**
 * Checks the inputs against the workflow, dispatches it and identifies the run it started.
 * Throws a WorkflowInputError (nothing dispatched) when the inputs do not fit the workflow.
 */
export async function dispatchWorkflow(options: DispatchOptions): Promise<DispatchedRun> {
  const { octokit, owner, repo } = options;
  const log = options.log ?? SILENT;
  const clock = options.clock ?? realClock;
  const ref = await resolveRef(options, options.ref);
  const workflow = await readWorkflow(options, options.workflow, ref);
  const spec = parseWorkflowDispatch(workflow.text, workflow.path);
  const inputs = { ...options.inputs };
  const problems = inputProblems(spec, inputs);
  if (problems.length) throw new WorkflowInputError(`cannot dispatch ${workflow.path} at ${ref}`, problems);

  // A unique value the run's title will show, when the workflow offers an input for it.
  let distinctId: DispatchedRun['distinctId'];
  const idInput = spec && distinctIdInput(spec);
  if (idInput) {
    if (inputs[idInput] !== undefined) {
      distinctId = { input: idInput, value: inputs[idInput] };
    } else {
      const value = (options.newDistinctId ?? randomUUID)();
      const withId = { ...inputs, [idInput]: value };
      if (Object.keys(withId).length <= MAX_INPUTS && inputsPayloadLength(withId) <= MAX_INPUTS_PAYLOAD) {
        inputs[idInput] = value;
        distinctId = { input: idInput, value };
      }
    }
  }

  const where = `${owner}/${repo}`;
  const send = (withDetails: boolean) =>
    octokit.rest.actions.createWorkflowDispatch({
      owner,
      repo,
      workflow_id: workflow.id,
      ref,
      inputs,
      ...(withDetails ? { return_run_details: true } : {}),
      // A retried dispatch that had in fact arrived would start a second run.
      request: { retries: 0 },
    });
  const failed = (err: unknown) =>
    new DispatchError(
      httpStatus(err) >= 500 || httpStatus(err) === 0
        ? `dispatching ${workflow.path} on ${ref} of ${where} failed (${httpStatus(err) ? `HTTP ${httpStatus(err)}` : 'no response'}): GitHub may or may not have started a run, so it is not retried (check the repository's Actions tab)`
        : describeFailure(`dispatching ${workflow.path} on ${ref} of ${where}`, err, 'actions: write'),
    );
  const dispatchedAtMs = clock.now();
  let response: Awaited<ReturnType<typeof send>>;
  let detailsRefused = false;
  try {
    response = await send(true);
  } catch (err) {
    if (!rejectsRunDetails(err)) throw failed(err);
    detailsRefused = true;
    log.info(
      `${new URL(octokit.request.endpoint.DEFAULTS.baseUrl).host} does not know return_run_details (GitHub Enterprise Server before 3.21): dispatching without it and finding the run ${distinctId ? `by its ${distinctId.input}` : 'among the new runs'}`,
    );
    response = await send(false).catch((e: unknown) => {
      throw failed(e);
    });
  }
  const base = {
    workflowPath: workflow.path,
    ref,
    inputs,
    dispatchedAtMs,
    ...(distinctId ? { distinctId } : {}),
  };
  // Octokit's types still know only the 204 (the OpenAPI description lagged the Feb 2026 change).
  const status: number = response.status;
  const details =
    status === 200
      ? (response.data as unknown as
          { workflow_run_id?: number; run_url?: string; html_url?: string } | undefined)
      : undefined;
  if (details?.workflow_run_id) {
    return {
      ...base,
      runId: details.workflow_run_id,
      htmlUrl: details.html_url ?? '',
      apiUrl: details.run_url ?? '',
      foundBy: 'return_run_details',
    };
  }
  if (!detailsRefused) log.info('the dispatch was accepted without run details: finding the run');
  const run = await findRun(options, workflow, ref, distinctId?.value, clock, log);
  return {
    ...base,
    runId: run.id,
    htmlUrl: run.html_url,
    apiUrl: `${octokit.request.endpoint.DEFAULTS.baseUrl}/repos/${owner}/${repo}/actions/runs/${run.id}`,
    foundBy: distinctId ? 'distinct_id' : 'only-candidate',
  };
}

async function findRun(
  options: DispatchOptions,
  workflow: Workflow,
  ref: string,
  distinctId: string | undefined,
  clock: Clock,
  log: DispatchLog,
): Promise<RunCandidate> {
  const { octokit, owner, repo } = options;
  const branch = shortRef(ref);
  // Server time, whole seconds (the `created` filter's precision), taken before the dispatch:
  // our run cannot be older; a run of someone else's in that second makes the search ambiguous,
  // never a wrong pick.
  const sinceMs = Math.floor((workflow.serverTimeMs ?? clock.now() - 5000) / 1000) * 1000;
  const since = new Date(sinceMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const deadline = clock.now() + (options.findTimeoutMs ?? 120_000);
  let backoff = options.poll?.initialMs ?? 2000;
  let pending: number | undefined;
  for (let listing = 1; ; listing++) {
    const { data } = await octokit.rest.actions
      .listWorkflowRuns({
        owner,
        repo,
        workflow_id: workflow.id,
        event: 'workflow_dispatch',
        branch,
        created: `>=${since}`,
        exclude_pull_requests: true,
        per_page: 20,
      })
      .catch((err: unknown) => {
        throw new DispatchError(
          describeFailure(`listing the runs of ${workflow.path}`, err, 'actions: read'),
        );
      });
    const outcome = matchRuns(data.workflow_runs, {
      createdSinceMs: sinceMs,
      branch,
      ...(distinctId ? { distinctId } : {}),
    });
    const decision = decide(outcome, {
      byDistinctId: distinctId !== undefined,
      ...(pending !== undefined ? { pending } : {}),
    });
    if (decision.kind === 'found') return decision.run;
    if (decision.kind === 'ambiguous') {
      throw new AmbiguousRunError(
        `cannot tell which run this dispatch started: ${decision.runs.length} workflow_dispatch runs of ${workflow.path} on ${branch} were created since ${since} (${decision.runs.map((r) => r.html_url).join(', ')}). ` +
          `Give the workflow a distinct_id input and show it in its run-name (run-name: "Deploy \${{ inputs.distinct_id }}") so the run can be identified, or use a GitHub version that returns run details (GHES 3.21+)`,
        decision.runs.map((r) => ({ id: r.id, url: r.html_url })),
      );
    }
    pending = decision.pending;
    if (clock.now() >= deadline && pending === undefined) {
      throw new DispatchError(
        `no run of ${workflow.path} on ${branch} appeared ${distinctId ? `with ${distinctId} in its title ` : ''}within ${formatDuration(options.findTimeoutMs ?? 120_000)} of the dispatch (${listing} listings)`,
      );
    }
    if (pending !== undefined)
      log.info(`run ${pending} is the only candidate so far: checking again before taking it`);
    await clock.sleep(pending !== undefined ? (options.poll?.initialMs ?? 2000) : backoff);
    backoff = nextBackoff(backoff, false, options.poll);
  }
}

export interface WaitOptions {
  /** From the dispatch (DispatchedRun.dispatchedAtMs) or the start of the wait (default 1 h). */
  timeoutMs?: number;
  /** Cancel the run when the timeout passes (default true). */
  cancelOnTimeout?: boolean;
  /** The deadline's origin (default now). */
  startedAtMs?: number;
  clock?: Clock;
  log?: DispatchLog;
  poll?: BackoffOptions;
}

export interface RunResult {
  runId: number;
  htmlUrl: string;
  status: string;
  conclusion: string | null;
  runNumber?: number;
  displayTitle?: string;
  /** The jobs of the run's latest attempt, as last seen. */
  jobs: JobView[];
  /** The timeout passed before the run completed. */
  timedOut: boolean;
  /** A cancel was requested on timeout (202). */
  cancelRequested: boolean;
  /** API requests made for this wait. */
  requests: number;
}

interface RunView {
  status: string | null;
  conclusion: string | null;
  html_url: string;
  run_number: number;
  display_title: string;
}

/** Watches one run: fetches it or its jobs, remembers what was seen, logs what changed. */
class RunWatcher {
  run?: RunView;
  jobs = new Map<number, JobView>();
  order: number[] = [];
  lastProbe: 'run' | 'jobs' | undefined;
  /** Jobs reads in a row that showed no change. */
  quietJobProbes = 0;
  rateLimit?: RateLimitState;
  requests = 0;

  private readonly target: DispatchTarget;
  readonly runId: number;
  private readonly log: DispatchLog;

  constructor(target: DispatchTarget, runId: number, log: DispatchLog) {
    this.target = target;
    this.runId = runId;
    this.log = log;
  }

  get completed(): boolean {
    return this.run?.status === 'completed';
  }

  get allJobsCompleted(): boolean {
    return this.jobs.size > 0 && [...this.jobs.values()].every((j) => j.status === 'completed');
  }

  private noteHeaders(headers: Record<string, unknown>): void {
    this.requests++;
    this.rateLimit = rateLimitFromHeaders(headers) ?? this.rateLimit;
  }

  private failed(what: string, err: unknown): DispatchError {
    return new DispatchError(describeFailure(`${what} of run ${this.runId}`, err, 'actions: read'));
  }

  /**
   * The next request: the jobs while jobs run (they show every change, cancellation included);
   * the run, alternating with the jobs, while there are none yet or all are done; and the run
   * after 10 jobs reads in a row that showed nothing new, in case it ended some other way.
   */
  nextProbe(): 'run' | 'jobs' {
    if (this.jobs.size === 0 || this.allJobsCompleted) return this.lastProbe === 'run' ? 'jobs' : 'run';
    return this.quietJobProbes >= 10 ? 'run' : 'jobs';
  }

  async probe(kind: 'run' | 'jobs'): Promise<boolean> {
    return kind === 'run' ? this.probeRun() : this.probeJobs();
  }

  async probeRun(): Promise<boolean> {
    const { octokit, owner, repo } = this.target;
    const response = await octokit.rest.actions
      .getWorkflowRun({ owner, repo, run_id: this.runId, exclude_pull_requests: true })
      .catch((err: unknown) => {
        this.requests++;
        throw this.failed('reading the status', err);
      });
    this.noteHeaders(response.headers);
    const data = response.data;
    const before = this.run;
    this.run = {
      status: data.status,
      conclusion: data.conclusion,
      html_url: data.html_url,
      run_number: data.run_number,
      display_title: data.display_title,
    };
    this.lastProbe = 'run';
    this.quietJobProbes = 0;
    const changed = !before || before.status !== data.status || before.conclusion !== data.conclusion;
    if (changed) {
      this.log.info(
        `run ${this.runId}: ${data.status}${data.status === 'completed' ? ` (${data.conclusion ?? 'no conclusion'})` : ''}`,
      );
    }
    return changed;
  }

  async probeJobs(): Promise<boolean> {
    const { octokit, owner, repo } = this.target;
    const jobs: JobView[] = [];
    for (let page = 1; ; page++) {
      const response = await octokit.rest.actions
        .listJobsForWorkflowRun({ owner, repo, run_id: this.runId, filter: 'latest', per_page: 100, page })
        .catch((err: unknown) => {
          this.requests++;
          throw this.failed('listing the jobs', err);
        });
      this.noteHeaders(response.headers);
      jobs.push(...(response.data.jobs as JobView[]));
      if (jobs.length >= response.data.total_count || response.data.jobs.length === 0) break;
    }
    this.lastProbe = 'jobs';
    const changes = diffJobs(this.jobs, jobs);
    this.quietJobProbes = changes.length ? 0 : this.quietJobProbes + 1;
    for (const change of changes) this.log.job(change.title, change.lines);
    for (const job of jobs) {
      if (!this.jobs.has(job.id)) this.order.push(job.id);
      this.jobs.set(job.id, job);
    }
    return changes.length > 0;
  }

  result(extra: { timedOut: boolean; cancelRequested: boolean }): RunResult {
    return {
      runId: this.runId,
      htmlUrl: this.run?.html_url ?? '',
      status: this.run?.status ?? 'unknown',
      conclusion: this.run?.conclusion ?? null,
      ...(this.run ? { runNumber: this.run.run_number, displayTitle: this.run.display_title } : {}),
      jobs: this.order.map((id) => this.jobs.get(id)!),
      requests: this.requests,
      ...extra,
    };
  }
}

/** The run's status now (one request), without waiting. */
export async function runStatus(
  target: DispatchTarget,
  runId: number,
  log: DispatchLog = SILENT,
): Promise<RunResult> {
  const watcher = new RunWatcher(target, runId, log);
  await watcher.probeRun();
  return watcher.result({ timedOut: false, cancelRequested: false });
}

/** Polls the run until it completes or the timeout passes (then cancels it unless told not to). */
export async function waitForRun(
  target: DispatchTarget,
  runId: number,
  options: WaitOptions = {},
): Promise<RunResult> {
  const clock = options.clock ?? realClock;
  const log = options.log ?? SILENT;
  const timeoutMs = options.timeoutMs ?? 3_600_000;
  const deadline = (options.startedAtMs ?? clock.now()) + timeoutMs;
  const watcher = new RunWatcher(target, runId, log);
  const initial = options.poll?.initialMs ?? 2000;
  let backoff = initial;
  // The dispatch just answered, so the run exists: the first read waits one interval like the rest.
  let delay = initial;
  let settled: boolean;
  for (;;) {
    const now = clock.now();
    if (now >= deadline) return await onTimeout(target, watcher, options, clock, log, timeoutMs);
    await clock.sleep(Math.min(pollDelay(delay, watcher.rateLimit), deadline - now));
    const kind = watcher.nextProbe();
    // All jobs seen completed by the last probe: the run's own completion needs no jobs refetch.
    settled = kind === 'run' && watcher.lastProbe === 'jobs' && watcher.allJobsCompleted;
    const changed = await watcher.probe(kind);
    if (watcher.completed) break;
    backoff = nextBackoff(backoff, changed, options.poll);
    // The last job just finished: the run completes with it, so read it after the shortest interval.
    delay = kind === 'jobs' && changed && watcher.allJobsCompleted ? initial : backoff;
  }
  if (!settled) await watcher.probeJobs();
  return watcher.result({ timedOut: false, cancelRequested: false });
}

async function onTimeout(
  target: DispatchTarget,
  watcher: RunWatcher,
  options: WaitOptions,
  clock: Clock,
  log: DispatchLog,
  timeoutMs: number,
): Promise<RunResult> {
  const { octokit, owner, repo } = target;
  const status = watcher.run?.status ?? 'unknown';
  if (options.cancelOnTimeout === false) {
    log.warning(
      `timed out after ${formatDuration(timeoutMs)} waiting for run ${watcher.runId} (${status}); leaving it running`,
    );
    return watcher.result({ timedOut: true, cancelRequested: false });
  }
  log.warning(
    `timed out after ${formatDuration(timeoutMs)} waiting for run ${watcher.runId} (${status}): cancelling it`,
  );
  let cancelRequested = false;
  try {
    await octokit.rest.actions.cancelWorkflowRun({ owner, repo, run_id: watcher.runId });
    watcher.requests++;
    cancelRequested = true;
  } catch (err) {
    watcher.requests++;
    if (httpStatus(err) !== 409) {
      log.warning(describeFailure(`cancelling run ${watcher.runId}`, err, 'actions: write'));
      return watcher.result({ timedOut: true, cancelRequested: false });
    }
    // 409: it completed meanwhile, so it did not time out after all.
    await watcher.probeRun();
    if (watcher.completed) {
      await watcher.probeJobs();
      return watcher.result({ timedOut: false, cancelRequested: false });
    }
  }
  // See the cancellation through, briefly: a few polls, not another timeout's worth.
  let backoff = options.poll?.initialMs ?? 2000;
  for (let i = 0; i < 5 && !watcher.completed; i++) {
    await clock.sleep(backoff);
    await watcher.probeRun();
    backoff = nextBackoff(backoff, false, options.poll);
  }
  await watcher.probeJobs();
  return watcher.result({ timedOut: true, cancelRequested });
}

export interface DispatchAndWaitOptions extends DispatchOptions {
  /** Wait for the run to complete (default true); otherwise report its status once. */
  wait?: boolean;
  /** From the dispatch (default 1 h). */
  timeoutMs?: number;
  /** Cancel the run when the timeout passes (default true). */
  cancelOnTimeout?: boolean;
  /** Told as soon as the run is known, before the wait (e.g. to publish its id even if the wait fails). */
  onDispatched?: (run: DispatchedRun) => void;
}

function describeFoundBy(run: DispatchedRun): string {
  if (run.foundBy === 'return_run_details') return 'named by the dispatch response';
  if (run.foundBy === 'distinct_id') return `found by its ${run.distinctId!.input} ${run.distinctId!.value}`;
  return `the only new run of ${run.workflowPath} on ${shortRef(run.ref)}`;
}

/** Dispatches the workflow and waits for its run (or reads its status once, with `wait: false`). */
export async function dispatchAndWait(
  options: DispatchAndWaitOptions,
): Promise<{ run: DispatchedRun; result: RunResult }> {
  const log = options.log ?? SILENT;
  const run = await dispatchWorkflow(options);
  log.info(
    `dispatched ${run.workflowPath} on ${run.ref}: run ${run.runId} ${run.htmlUrl} (${describeFoundBy(run)})`,
  );
  options.onDispatched?.(run);
  const target = { octokit: options.octokit, owner: options.owner, repo: options.repo };
  const result =
    options.wait === false
      ? await runStatus(target, run.runId, log)
      : await waitForRun(target, run.runId, {
          ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
          ...(options.cancelOnTimeout !== undefined ? { cancelOnTimeout: options.cancelOnTimeout } : {}),
          startedAtMs: run.dispatchedAtMs,
          ...(options.clock ? { clock: options.clock } : {}),
          log,
          ...(options.poll ? { poll: options.poll } : {}),
        });
  if (!result.htmlUrl) result.htmlUrl = run.htmlUrl;
  return { run, result };
}
