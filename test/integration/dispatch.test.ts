// dispatch against the local GitHub stand-in: workflows read from real repositories, runs that go
// queued -> in_progress -> completed on a test clock, rate limits, and a server that refuses
// return_run_details as GitHub Enterprise Server before 3.21 does. Every request and response is
// checked against GitHub's OpenAPI description. The waits run on a fake clock (no real sleeping);
// the rate-limit waits the plugins make are real but scaled to 20 ms per second on both sides.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { createGitHubClient, type GitHubClient } from '../../src/core/github/client.ts';
import {
  AmbiguousRunError,
  dispatchAndWait,
  dispatchWorkflow,
  DispatchError,
  waitForRun,
  type DispatchAndWaitOptions,
  type DispatchLog,
} from '../../src/core/github/dispatch.ts';
import type { Clock } from '../../src/core/github/poll.ts';
import { WorkflowInputError } from '../../src/core/github/workflow-inputs.ts';
import { GitHubStandIn, type RunScript } from '../cluster/github-api.ts';
import { GitServer } from '../cluster/git-server.ts';
import { NODE24, runAction } from '../cluster/run-action.ts';

const TOKEN = 'ghs_' + 'd7'.repeat(18);
const BOT = { login: 'kube-actions[bot]', id: 41898282, type: 'Bot' as const };
const SECOND_MS = 20;

class FakeClock implements Clock {
  t: number;
  readonly sleeps: number[] = [];
  constructor(t: number) {
    this.t = t;
  }
  now(): number {
    return this.t;
  }
  sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    this.t += ms;
    return Promise.resolve();
  }
}

const clock = new FakeClock(Date.now());
let server: GitServer;
let github: GitHubStandIn;
let octokit: GitHubClient;

beforeAll(async () => {
  server = await GitServer.start();
  github = await GitHubStandIn.start(server, { [TOKEN]: BOT }, { clock, secondMs: SECOND_MS });
  octokit = createGitHubClient({ token: TOKEN, apiURL: github.apiURL, secondMs: SECOND_MS });
});
afterAll(async () => {
  await github?.stop();
  await server?.stop();
});
beforeEach(() => {
  github.rejectRunDetails = false;
  github.onRequest = undefined;
  github.setRateLimit(5000, 3600);
  clock.sleeps.length = 0;
});

const DEPLOY = `name: Deploy
run-name: Deploy \${{ inputs.environment }}
on:
  workflow_dispatch:
    inputs:
      environment: { type: choice, required: true, options: [staging, production] }
      version: { required: true }
      dry-run: { type: boolean, default: false }
      replicas: { type: number, default: 2 }
jobs:
  deploy: { runs-on: ubuntu-24.04, steps: [{ run: echo }] }
`;
const TRACKED = DEPLOY.replace(
  'run-name: Deploy ${{ inputs.environment }}',
  'run-name: Deploy ${{ inputs.environment }} [${{ inputs.distinct_id }}]',
).replace('      replicas:', '      distinct_id: { description: set by the dispatcher }\n      replicas:');

const PIPELINE: RunScript = {
  queuedSeconds: 5,
  jobs: [
    {
      name: 'build',
      steps: [{ name: 'Set up job' }, { name: 'Compile', seconds: 20 }, { name: 'Test', seconds: 40 }],
    },
    { name: 'deploy', queuedSeconds: 3, steps: [{ name: 'Set up job' }, { name: 'Roll out', seconds: 60 }] },
  ],
};

let repoCount = 0;
/** A fresh repository holding `workflows` (file name -> text); returns "owner/name". */
async function repo(workflows: Record<string, string> = { 'deploy.yml': DEPLOY }): Promise<string> {
  const name = `acme/app-${++repoCount}`;
  await server.createRepo(
    name,
    Object.fromEntries(Object.entries(workflows).map(([f, t]) => [`.github/workflows/${f}`, t])),
  );
  return name;
}

function recordingLog() {
  const lines: string[] = [];
  const log: DispatchLog = {
    info: (m) => lines.push(m),
    warning: (m) => lines.push(`warning: ${m}`),
    job: (title, steps) => lines.push(title, ...steps.map((s) => `  ${s}`)),
  };
  return { lines, log };
}

function options(
  repository: string,
  overrides: Partial<DispatchAndWaitOptions> = {},
): DispatchAndWaitOptions {
  const [owner, name] = repository.split('/') as [string, string];
  return {
    octokit,
    owner,
    repo: name,
    workflow: 'deploy.yml',
    ref: 'main',
    inputs: { environment: 'staging', version: '1.2.3' },
    clock,
    ...overrides,
  };
}

/** The stand-in's requests for `repository` since `from`, as "operationId status". */
function calls(repository: string, from = 0): string[] {
  const [owner, name] = repository.split('/');
  return github.requests
    .slice(from)
    .filter((r) => r.params.owner === owner && r.params.repo === name)
    .map((r) => `${r.operationId} ${r.status}`);
}

describe('dispatch with return_run_details', () => {
  test('the dispatch response names the run: no list calls, one request per poll, every step logged once', async () => {
    const r = await repo();
    github.setRunScript(r, 'deploy.yml', PIPELINE);
    const { lines, log } = recordingLog();
    const from = github.requests.length;
    const { run, result } = await dispatchAndWait(options(r, { log }));

    const started = github.runs().at(-1)!;
    expect(run).toMatchObject({
      runId: started.id,
      foundBy: 'return_run_details',
      htmlUrl: `${server.baseUrl}/${r}/actions/runs/${started.id}`,
      workflowPath: '.github/workflows/deploy.yml',
      inputs: { environment: 'staging', version: '1.2.3' },
    });
    expect(started.displayTitle).toBe('Deploy staging');
    expect(result).toMatchObject({
      runId: started.id,
      status: 'completed',
      conclusion: 'success',
      timedOut: false,
      cancelRequested: false,
      runNumber: 1,
    });
    expect(result.jobs.map((j) => [j.name, j.conclusion])).toEqual([
      ['build', 'success'],
      ['deploy', 'success'],
    ]);
    expect(result.jobs[1]!.html_url).toBe(
      `${server.baseUrl}/${r}/actions/runs/${started.id}/job/${started.id * 100 + 2}`,
    );

    const made = calls(r, from);
    expect(made.slice(0, 2)).toEqual(['repos/get-content 200', 'actions/create-workflow-dispatch 200']);
    expect(made.filter((c) => c.startsWith('actions/list-workflow-runs'))).toEqual([]);
    // One request per poll interval, none in between.
    expect(result.requests).toBe(clock.sleeps.length);
    expect(made.length).toBe(2 + result.requests);
    expect(Math.min(...clock.sleeps)).toBe(2000);
    expect(Math.max(...clock.sleeps)).toBeLessThanOrEqual(30000);

    // Each step's completion is logged exactly once, in order, with the job it belongs to.
    expect(lines.filter((l) => /^ {2}\d\. .*: success/.test(l))).toEqual([
      '  1. Set up job: success (1s)',
      '  2. Compile: success (20s)',
      '  3. Test: success (40s)',
      '  1. Set up job: success (1s)',
      '  2. Roll out: success (1m 00s)',
    ]);
    expect(lines).toContain('build: success in 1m 01s');
    expect(lines).toContain('deploy: success in 1m 01s');
    expect(lines[0]).toBe(
      `dispatched .github/workflows/deploy.yml on main: run ${started.id} ${run.htmlUrl} (named by the dispatch response)`,
    );
    expect(lines.filter((l) => l.startsWith(`run ${started.id}: `))).toEqual([
      `run ${started.id}: queued`,
      `run ${started.id}: in_progress`,
      `run ${started.id}: completed (success)`,
    ]);
  });

  test('a failing step fails its job, skips the rest and the later jobs; the run concludes failure', async () => {
    const r = await repo();
    github.setRunScript(r, 'deploy.yml', {
      jobs: [
        { name: 'build', steps: [{ name: 'Compile', seconds: 5 }] },
        {
          name: 'deploy',
          steps: [{ name: 'Roll out', seconds: 30, conclusion: 'failure' }, { name: 'Verify' }],
        },
        { name: 'smoke', steps: [{ name: 'Probe' }] },
      ],
    });
    const { lines, log } = recordingLog();
    const { result } = await dispatchAndWait(options(r, { log }));
    expect(result).toMatchObject({ status: 'completed', conclusion: 'failure', timedOut: false });
    expect(result.jobs.map((j) => [j.name, j.status, j.conclusion])).toEqual([
      ['build', 'completed', 'success'],
      ['deploy', 'completed', 'failure'],
      ['smoke', 'completed', 'skipped'],
    ]);
    expect(result.jobs[1]!.steps!.map((s) => s.conclusion)).toEqual(['failure', 'skipped']);
    expect(lines).toContain('deploy: failure in 30s');
    expect(lines).toContain('  1. Roll out: failure (30s)');
  });

  test('a run cancelled by someone else concludes cancelled', async () => {
    const r = await repo();
    github.setRunScript(r, 'deploy.yml', {
      jobs: [{ name: 'deploy', steps: [{ name: 'Wait' }] }],
      hang: true,
    });
    let polls = 0;
    github.onRequest = () => {
      if (++polls === 6) {
        const run = github.runs().at(-1)!;
        run.cancelledMs = clock.now();
      }
    };
    const { result } = await dispatchAndWait(options(r));
    expect(result).toMatchObject({
      status: 'completed',
      conclusion: 'cancelled',
      timedOut: false,
      cancelRequested: false,
    });
    expect(result.jobs.map((j) => [j.name, j.conclusion])).toEqual([['deploy', 'cancelled']]);
  });

  test('timeout: the run is cancelled, and reported as timed out', async () => {
    const r = await repo();
    github.setRunScript(r, 'deploy.yml', {
      jobs: [{ name: 'deploy', steps: [{ name: 'Wait for approval' }] }],
      hang: true,
    });
    const { lines, log } = recordingLog();
    const from = github.requests.length;
    const start = clock.now();
    const { run, result } = await dispatchAndWait(options(r, { log, timeoutMs: 5 * 60_000 }));
    expect(result).toMatchObject({
      status: 'completed',
      conclusion: 'cancelled',
      timedOut: true,
      cancelRequested: true,
    });
    expect(clock.now() - start).toBeGreaterThanOrEqual(5 * 60_000);
    expect(calls(r, from).filter((c) => c.startsWith('actions/cancel-workflow-run'))).toEqual([
      'actions/cancel-workflow-run 202',
    ]);
    expect(lines).toContain(
      `warning: timed out after 5m 00s waiting for run ${run.runId} (in_progress): cancelling it`,
    );
    expect(result.jobs[0]!.steps!.map((s) => [s.name, s.conclusion])).toEqual([
      ['Wait for approval', 'cancelled'],
    ]);
  });

  test('timeout without cancel-on-timeout leaves the run going', async () => {
    const r = await repo();
    github.setRunScript(r, 'deploy.yml', {
      jobs: [{ name: 'deploy', steps: [{ name: 'Wait' }] }],
      hang: true,
    });
    const from = github.requests.length;
    const { result } = await dispatchAndWait(options(r, { timeoutMs: 60_000, cancelOnTimeout: false }));
    expect(result).toMatchObject({
      status: 'in_progress',
      conclusion: null,
      timedOut: true,
      cancelRequested: false,
    });
    expect(calls(r, from).some((c) => c.startsWith('actions/cancel-workflow-run'))).toBe(false);
  });

  test('a workflow given by numeric id, and the default branch when no ref is given', async () => {
    const r = await repo();
    const { data } = await octokit.rest.actions.getWorkflow({
      owner: 'acme',
      repo: r.split('/')[1]!,
      workflow_id: 'deploy.yml',
    });
    const { run, result } = await dispatchAndWait({
      ...options(r),
      workflow: String(data.id),
      ref: undefined,
    });
    expect(run).toMatchObject({ ref: 'main', workflowPath: '.github/workflows/deploy.yml' });
    expect(result.conclusion).toBe('success');
  });
});

describe('dispatch on a server that refuses return_run_details (GHES before 3.21)', () => {
  test('dispatched again without it; the run is found by its distinct_id among concurrent runs', async () => {
    const r = await repo({ 'deploy.yml': TRACKED });
    github.rejectRunDetails = true;
    // Someone else's dispatch of the same workflow on the same ref, at the same time.
    const other = await github.startRun(r, 'deploy.yml', 'main', {
      environment: 'staging',
      version: '1',
      distinct_id: 'theirs',
    });
    const from = github.requests.length;
    const { run, result } = await dispatchAndWait(options(r, { newDistinctId: () => 'ours-4b1e0c2a' }));
    const mine = github.runs().find((x) => x.inputs.distinct_id === 'ours-4b1e0c2a')!;
    expect(mine.id).not.toBe(other.id);
    expect(run).toMatchObject({
      runId: mine.id,
      foundBy: 'distinct_id',
      distinctId: { input: 'distinct_id', value: 'ours-4b1e0c2a' },
      htmlUrl: `${server.baseUrl}/${r}/actions/runs/${mine.id}`,
      inputs: { environment: 'staging', version: '1.2.3', distinct_id: 'ours-4b1e0c2a' },
    });
    expect(mine.displayTitle).toBe('Deploy staging [ours-4b1e0c2a]');
    expect(result.conclusion).toBe('success');
    const dispatches = github.requests
      .slice(from)
      .filter((q) => q.operationId === 'actions/create-workflow-dispatch');
    expect(dispatches.map((d) => [d.status, 'return_run_details' in (d.body as object)])).toEqual([
      [422, true],
      [204, false],
    ]);
    expect(calls(r, from).filter((c) => c.startsWith('actions/list-workflow-runs'))).toEqual([
      'actions/list-workflow-runs 200',
    ]);
  });

  test('without a distinct_id input: the only new run, taken once a second listing still shows only it', async () => {
    const r = await repo();
    github.rejectRunDetails = true;
    const { lines, log } = recordingLog();
    const from = github.requests.length;
    const { run } = await dispatchAndWait(options(r, { log }));
    expect(run).toMatchObject({ runId: github.runs().at(-1)!.id, foundBy: 'only-candidate' });
    expect(calls(r, from).filter((c) => c.startsWith('actions/list-workflow-runs'))).toEqual([
      'actions/list-workflow-runs 200',
      'actions/list-workflow-runs 200',
    ]);
    expect(lines).toContain(`run ${run.runId} is the only candidate so far: checking again before taking it`);
  });

  test('a run that shows in the list only later is waited for', async () => {
    const r = await repo({ 'deploy.yml': TRACKED });
    github.rejectRunDetails = true;
    github.setRunScript(r, 'deploy.yml', {
      listedAfterSeconds: 7,
      jobs: [{ name: 'deploy', steps: [{ name: 'Go' }] }],
    });
    const from = github.requests.length;
    const { run } = await dispatchAndWait(options(r));
    expect(run.foundBy).toBe('distinct_id');
    // Listed at 0 s, 2 s, 5 s (nothing yet) and 9.5 s.
    expect(calls(r, from).filter((c) => c.startsWith('actions/list-workflow-runs')).length).toBe(4);
  });

  test('another run of the workflow created meanwhile: refused as ambiguous, naming both runs', async () => {
    const r = await repo();
    github.rejectRunDetails = true;
    let theirs = 0;
    github.beforeNext('actions/create-workflow-dispatch', async () => {
      theirs = (await github.startRun(r, 'deploy.yml', 'main', { environment: 'production', version: '9' }))
        .id;
    });
    const err = await dispatchWorkflow(options(r)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AmbiguousRunError);
    const ours = github.runs().at(-1)!.id;
    expect((err as AmbiguousRunError).runs.map((x) => x.id)).toEqual([theirs, ours].sort((a, b) => a - b));
    expect((err as Error).message).toMatch(
      /^cannot tell which run this dispatch started: 2 workflow_dispatch runs of \.github\/workflows\/deploy\.yml on main were created since .*Give the workflow a distinct_id input and show it in its run-name/,
    );
  });

  test('a second run appearing during the confirmation is refused too (the first listing alone would have guessed)', async () => {
    const r = await repo();
    github.rejectRunDetails = true;
    github.beforeNext('actions/list-workflow-runs', () => {
      github.beforeNext('actions/list-workflow-runs', async () => {
        await github.startRun(r, 'deploy.yml', 'main', { environment: 'production', version: '9' });
      });
      return Promise.resolve();
    });
    const err = await dispatchWorkflow(options(r)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AmbiguousRunError);
    expect((err as AmbiguousRunError).runs).toHaveLength(2);
  });

  test('no run appears: a clear error after the search time', async () => {
    const r = await repo({ 'deploy.yml': TRACKED });
    github.rejectRunDetails = true;
    github.setRunScript(r, 'deploy.yml', { listedAfterSeconds: 100_000 });
    const err = await dispatchWorkflow(options(r, { findTimeoutMs: 60_000 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DispatchError);
    expect((err as Error).message).toMatch(
      /^no run of \.github\/workflows\/deploy\.yml on main appeared with [\w-]+ in its title within 1m 00s of the dispatch \(\d+ listings\)$/,
    );
  });
});

describe('inputs are checked against the workflow before dispatching', () => {
  test.each([
    [
      'a missing required input',
      { environment: 'staging' },
      ['input "version" is required and the workflow gives it no default'],
    ],
    [
      'a choice outside its options',
      { environment: 'prod', version: '1' },
      ['input "environment" must be one of "staging", "production", got "prod"'],
    ],
    [
      'a non-boolean',
      { environment: 'staging', version: '1', 'dry-run': 'yes' },
      ['input "dry-run" is a boolean: it must be true or false, got "yes"'],
    ],
    [
      'a non-number',
      { environment: 'staging', version: '1', replicas: 'three' },
      ['input "replicas" is a number, got "three"'],
    ],
    [
      'an unknown input',
      { environment: 'staging', version: '1', colour: 'red' },
      ['unknown input "colour" (the workflow declares "environment", "version", "dry-run", "replicas")'],
    ],
    [
      'a payload over 65,535 characters',
      { environment: 'staging', version: 'x'.repeat(70_000) },
      ['the inputs are 70,038 characters as JSON: GitHub accepts at most 65,535'],
    ],
  ])('%s is refused and nothing is dispatched', async (_what, inputs, problems) => {
    const r = await repo();
    const from = github.requests.length;
    const err = await dispatchWorkflow(options(r, { inputs })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowInputError);
    expect((err as WorkflowInputError).problems).toEqual(problems);
    expect((err as Error).message).toBe(
      `cannot dispatch .github/workflows/deploy.yml at main: ${problems[0]}`,
    );
    expect(calls(r, from)).toEqual(['repos/get-content 200']);
  });

  test('more than 25 inputs', async () => {
    const names = Array.from({ length: 26 }, (_, i) => `i${i}`);
    const r = await repo({
      'wide.yml': `on:\n  workflow_dispatch:\n    inputs:\n${names.map((n) => `      ${n}: {}\n`).join('')}jobs: {}\n`,
    });
    const err = await dispatchWorkflow(
      options(r, { workflow: 'wide.yml', inputs: Object.fromEntries(names.map((n) => [n, 'v'])) }),
    ).catch((e: unknown) => e);
    expect((err as WorkflowInputError).problems).toEqual(['26 inputs given: GitHub accepts at most 25']);
  });

  test('a workflow without workflow_dispatch, a missing workflow, a missing ref', async () => {
    const r = await repo({ 'deploy.yml': DEPLOY, 'ci.yml': 'on: [push]\njobs: {}\n' });
    const ci = await dispatchWorkflow(options(r, { workflow: 'ci.yml', inputs: {} })).catch(
      (e: unknown) => e,
    );
    expect((ci as Error).message).toBe(
      'cannot dispatch .github/workflows/ci.yml at main: the workflow has no workflow_dispatch trigger (add `on: workflow_dispatch` to it)',
    );
    const none = await dispatchWorkflow(options(r, { workflow: 'nope.yml' })).catch((e: unknown) => e);
    expect((none as Error).message).toBe(
      `workflow .github/workflows/nope.yml not found at ref "main" of ${r} (or the token cannot read it)`,
    );
    const ref = await dispatchWorkflow(options(r, { ref: 'no-such-branch' })).catch((e: unknown) => e);
    expect((ref as Error).message).toBe(
      `workflow .github/workflows/deploy.yml not found at ref "no-such-branch" of ${r} (or the token cannot read it)`,
    );
    const bad = await dispatchWorkflow(options(r, { workflow: '../x.yml' })).catch((e: unknown) => e);
    expect((bad as Error).message).toBe(
      'workflow must be a file name in .github/workflows (deploy.yml), its path or its numeric id, got "../x.yml"',
    );
  });

  test('the stand-in, like GitHub, refuses on its own what the client refuses first', async () => {
    const r = await repo();
    const post = (inputs: Record<string, string>) =>
      fetch(`${github.apiURL}/repos/${r}/actions/workflows/deploy.yml/dispatches`, {
        method: 'POST',
        headers: { Authorization: `token ${TOKEN}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ ref: 'main', inputs }),
      }).then(async (res) => [res.status, ((await res.json()) as { message: string }).message]);
    expect(await post({ environment: 'staging', version: '1', colour: 'red' })).toEqual([
      422,
      'Unexpected inputs provided: ["colour"]',
    ]);
    expect(await post({ environment: 'staging' })).toEqual([422, "Required input 'version' not provided"]);
    expect(await post({ environment: 'prod', version: '1' })).toEqual([
      422,
      "Provided value 'prod' for input 'environment' not in the list of allowed values",
    ]);
  });
});

describe('rate limits and failures', () => {
  test('a secondary rate limit (403, Retry-After) on the dispatch: retried once, after the wait, one run', async () => {
    const r = await repo();
    github.rateLimitNext('actions/create-workflow-dispatch', { status: 403, retryAfterSeconds: 3 });
    const events: string[] = [];
    const client = createGitHubClient({
      token: TOKEN,
      apiURL: github.apiURL,
      secondMs: SECOND_MS,
      onRateLimit: (e) => events.push(`${e.kind} ${e.method} ${e.retryAfterSeconds} ${e.retrying}`),
    });
    const runs = github.runs().length;
    const from = github.requests.length;
    const { result } = await dispatchAndWait(options(r, { octokit: client }));
    expect(result.conclusion).toBe('success');
    expect(calls(r, from).filter((c) => c.startsWith('actions/create-workflow-dispatch'))).toEqual([
      'actions/create-workflow-dispatch 403',
      'actions/create-workflow-dispatch 200',
    ]);
    expect(github.runs().length).toBe(runs + 1);
    expect(events).toEqual(['secondary POST 3 true']);
    expect(github.rateLimitViolations).toEqual([]);
  });

  test('a 429 while polling: no request before its Retry-After has passed', async () => {
    const r = await repo();
    github.setRunScript(r, 'deploy.yml', PIPELINE);
    github.rateLimitNext('actions/get-workflow-run', { status: 429, retryAfterSeconds: 2 });
    github.rateLimitNext('actions/list-jobs-for-workflow-run', { status: 429, retryAfterSeconds: 4 });
    const from = github.requests.length;
    const { result } = await dispatchAndWait(options(r));
    expect(result.conclusion).toBe('success');
    const made = calls(r, from);
    expect(made.filter((c) => c.endsWith(' 429'))).toEqual([
      'actions/get-workflow-run 429',
      'actions/list-jobs-for-workflow-run 429',
    ]);
    expect(github.rateLimitViolations).toEqual([]);
  });

  test('the primary budget running out: the client waits for the reset and carries on', async () => {
    const r = await repo();
    github.setRunScript(r, 'deploy.yml', PIPELINE);
    github.setRateLimit(4, 5);
    const events: string[] = [];
    const client = createGitHubClient({
      token: TOKEN,
      apiURL: github.apiURL,
      secondMs: SECOND_MS,
      onRateLimit: (e) => events.push(`${e.kind} ${e.retrying}`),
    });
    const from = github.requests.length;
    const { result } = await dispatchAndWait(options(r, { octokit: client }));
    expect(result.conclusion).toBe('success');
    expect(calls(r, from).filter((c) => c.endsWith(' 403')).length).toBeGreaterThanOrEqual(1);
    expect(events.length).toBeGreaterThanOrEqual(1);
    expect(new Set(events)).toEqual(new Set(['primary true']));
    expect(github.rateLimitViolations).toEqual([]);
  });

  test('the stand-in notices a request sent while a Retry-After is pending', async () => {
    const r = await repo();
    github.rateLimitNext('repos/get', { status: 429, retryAfterSeconds: 5 });
    const get = () =>
      fetch(`${github.apiURL}/repos/${r}`, { headers: { Authorization: `token ${TOKEN}` } }).then((res) => [
        res.status,
        res.headers.get('retry-after'),
      ]);
    expect(await get()).toEqual([429, '5']);
    expect((await get())[0]).toBe(403);
    expect(github.rateLimitViolations).toHaveLength(1);
    expect(github.rateLimitViolations[0]).toMatch(
      /^GET repos\/get arrived \d+ ms before the wait given by a secondary rate limit was over$/,
    );
    github.rateLimitViolations.length = 0;
    // Let the block pass before the next test.
    await new Promise((res) => setTimeout(res, 5 * SECOND_MS));
  });

  test('a client that retries before the Retry-After has passed is caught', async () => {
    const r = await repo();
    // This client's second is 1 ms, the stand-in's 20 ms: its retries come too early.
    const hasty = createGitHubClient({ token: TOKEN, apiURL: github.apiURL, secondMs: 1 });
    github.rateLimitNext('repos/get-content', { status: 403, retryAfterSeconds: 5 });
    const err = await dispatchWorkflow(options(r, { octokit: hasty })).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(
      /^reading \.github\/workflows\/deploy\.yml at main of .* failed \(HTTP 403\): You have exceeded a secondary rate limit/,
    );
    expect(github.rateLimitViolations.length).toBeGreaterThanOrEqual(1);
    expect(github.rateLimitViolations.every((v) => v.startsWith('GET repos/get-content arrived '))).toBe(
      true,
    );
    github.rateLimitViolations.length = 0;
    await new Promise((res) => setTimeout(res, 5 * SECOND_MS));
  });

  test('a 502 while polling is retried; a 502 on the dispatch is not (it may have started a run)', async () => {
    const r = await repo();
    github.failNext('actions/get-workflow-run', 502);
    const from = github.requests.length;
    const { result } = await dispatchAndWait(options(r));
    expect(result.conclusion).toBe('success');
    expect(
      calls(r, from)
        .filter((c) => c.startsWith('actions/get-workflow-run'))
        .slice(0, 2),
    ).toEqual(['actions/get-workflow-run 502', 'actions/get-workflow-run 200']);

    github.failNext('actions/create-workflow-dispatch', 502);
    const err = await dispatchWorkflow(options(r)).catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      `dispatching .github/workflows/deploy.yml on main of ${r} failed (HTTP 502): GitHub may or may not have started a run, so it is not retried (check the repository's Actions tab)`,
    );
    expect(calls(r).filter((c) => c === 'actions/create-workflow-dispatch 502')).toHaveLength(1);
  });

  test('a token the API refuses', async () => {
    const r = await repo();
    const bad = createGitHubClient({
      token: 'ghs_wrong_wrong_wrong',
      apiURL: github.apiURL,
      secondMs: SECOND_MS,
    });
    const err = await dispatchWorkflow(options(r, { octokit: bad })).catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      `reading .github/workflows/deploy.yml at main of ${r} failed (HTTP 401): the token was rejected (expired or invalid)`,
    );
  });

  test('waitForRun on a run that does not exist', async () => {
    const r = await repo();
    const [owner, name] = r.split('/') as [string, string];
    const err = await waitForRun({ octokit, owner, repo: name }, 12345, { clock }).catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      'reading the status of run 12345 failed (HTTP 404): not found, or the token cannot see it (it needs actions: read)',
    );
  });
});

describe('the dispatch action, run as the runner runs it', () => {
  // The action's process would sleep for real between polls: the stand-in's clock jumps ten
  // minutes per request instead, so the first poll already finds the run completed.
  const advance = () => {
    github.onRequest = () => {
      clock.t += 600_000;
    };
  };
  const env = (r: string) => ({
    GITHUB_REPOSITORY: r,
    GITHUB_REF: 'refs/heads/main',
    GITHUB_API_URL: github.apiURL,
  });

  test('outputs, a job summary with a table of jobs, and a log grouped per job', async () => {
    const r = await repo();
    github.setRunScript(r, 'deploy.yml', PIPELINE);
    advance();
    const result = await runAction(
      'dispatch',
      { workflow: 'deploy.yml', token: TOKEN, inputs: 'environment: production\nversion: "2.0"\n' },
      env(r),
    );
    const run = github.runs().at(-1)!;
    expect(result.stdout).not.toContain('::error::');
    expect(result.exitCode).toBe(0);
    expect(run.inputs).toEqual({ environment: 'production', version: '2.0' });
    expect(run.headBranch).toBe('main');
    expect(result.outputs).toEqual({
      'run-id': String(run.id),
      'run-url': `${server.baseUrl}/${r}/actions/runs/${run.id}`,
      status: 'completed',
      conclusion: 'success',
    });
    const jobUrl = (n: number) => `${server.baseUrl}/${r}/actions/runs/${run.id}/job/${run.id * 100 + n}`;
    expect(result.summary).toContain('<h3>Dispatch</h3>');
    expect(result.summary).toContain(
      `<a href="${server.baseUrl}/${r}/actions/runs/${run.id}">.github/workflows/deploy.yml #1</a> on <code>refs/heads/main</code>: completed, <strong>success</strong>`,
    );
    expect(result.summary).toContain(
      '<tr><th>Job</th><th>Conclusion</th><th>Duration</th><th>Link</th></tr>' +
        `<tr><td>build</td><td>success</td><td>1m 01s</td><td><a href="${jobUrl(1)}">logs</a></td></tr>` +
        `<tr><td>deploy</td><td>success</td><td>1m 01s</td><td><a href="${jobUrl(2)}">logs</a></td></tr>`,
    );
    expect(result.stdout).toContain('::group::build: success in 1m 01s\n  1. Set up job: success (1s)\n');
    expect(result.stdout).toContain(
      `run ${run.id}: completed, success ${server.baseUrl}/${r}/actions/runs/${run.id}`,
    );
  });

  test('fails the step on a failure conclusion; fail-on: none does not', async () => {
    const r = await repo();
    github.setRunScript(r, 'deploy.yml', {
      jobs: [{ name: 'deploy', steps: [{ name: 'Go', conclusion: 'failure' }] }],
    });
    advance();
    const inputs = {
      workflow: 'deploy.yml',
      token: TOKEN,
      inputs: '{"environment": "staging", "version": "1"}',
    };
    const failed = await runAction('dispatch', inputs, env(r));
    const run = github.runs().at(-1)!;
    expect(failed.exitCode).toBe(1);
    expect(failed.outputs.conclusion).toBe('failure');
    expect(failed.stdout).toContain(
      `::error::run ${run.id} concluded failure (fail-on: failure, cancelled, timed_out, action_required, stale, startup_failure): ${server.baseUrl}/${r}/actions/runs/${run.id}`,
    );
    const tolerated = await runAction('dispatch', { ...inputs, 'fail-on': 'none' }, env(r));
    expect(tolerated.exitCode).toBe(0);
    expect(tolerated.outputs.conclusion).toBe('failure');
  });

  test('a timeout cancels the run and fails the step', async () => {
    const r = await repo();
    github.setRunScript(r, 'deploy.yml', {
      jobs: [{ name: 'deploy', steps: [{ name: 'Wait for approval' }] }],
      hang: true,
    });
    const result = await runAction(
      'dispatch',
      { workflow: 'deploy.yml', token: TOKEN, inputs: 'environment: staging\nversion: "1"', timeout: '1s' },
      env(r),
    );
    const run = github.runs().at(-1)!;
    const url = `${server.baseUrl}/${r}/actions/runs/${run.id}`;
    expect(result.exitCode).toBe(1);
    expect(result.outputs).toEqual({
      'run-id': String(run.id),
      'run-url': url,
      status: 'completed',
      conclusion: 'cancelled',
    });
    expect(result.stdout).toContain(
      `::warning::timed out after 1s waiting for run ${run.id} (in_progress): cancelling it`,
    );
    expect(result.stdout).toContain(
      `::error::run ${run.id} did not complete within 1s: cancelled it (${url})`,
    );
    expect(result.summary).toContain('completed, <strong>cancelled</strong> (timed out: cancelled)');
    expect(result.summary).toContain('<tr><td>deploy</td><td>cancelled</td>');
  });

  test('wait: false reports the first status and does not wait', async () => {
    const r = await repo();
    github.setRunScript(r, 'deploy.yml', {
      queuedSeconds: 600,
      jobs: [{ name: 'deploy', steps: [{ name: 'Go' }] }],
    });
    const from = github.requests.length;
    const result = await runAction(
      'dispatch',
      { workflow: 'deploy.yml', token: TOKEN, inputs: 'environment: staging\nversion: "1"', wait: 'false' },
      env(r),
    );
    expect(result.exitCode).toBe(0);
    expect(result.outputs).toMatchObject({ status: 'queued', conclusion: '' });
    expect(calls(r, from)).toEqual([
      'repos/get-content 200',
      'actions/create-workflow-dispatch 200',
      'actions/get-workflow-run 200',
    ]);
  });

  test('refuses invalid inputs before dispatching, naming each', async () => {
    const r = await repo();
    const from = github.requests.length;
    const result = await runAction(
      'dispatch',
      { workflow: 'deploy.yml', token: TOKEN, inputs: 'environment: prod\ncolour: red\n' },
      env(r),
    );
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toContain(
      '::error::cannot dispatch .github/workflows/deploy.yml at refs/heads/main:%0A' +
        '  - input "environment" must be one of "staging", "production", got "prod"%0A' +
        '  - unknown input "colour" (the workflow declares "environment", "version", "dry-run", "replicas")%0A' +
        '  - input "version" is required and the workflow gives it no default',
    );
    expect(calls(r, from)).toEqual(['repos/get-content 200']);
  });

  test.each([
    [{ timeout: 'soon' }, 'input "timeout" must be a duration like 90s, 30m or 1h30m, got "soon"'],
    [{ 'fail-on': 'failed' }, 'input "fail-on" lists "failed", which GitHub never concludes with'],
    [{ inputs: '- a' }, 'input "inputs" must be a mapping of input names to values: got a list'],
  ])('refuses %j before any request', async (bad, message) => {
    const r = await repo();
    const before = github.requests.length;
    const result = await runAction('dispatch', { workflow: 'deploy.yml', token: TOKEN, ...bad }, env(r));
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toContain(`::error::${message}`);
    expect(github.requests.length).toBe(before);
  });

  test('on an old GHES: finds the run by its distinct_id', async () => {
    const r = await repo({ 'deploy.yml': TRACKED });
    github.rejectRunDetails = true;
    advance();
    const result = await runAction(
      'dispatch',
      { workflow: 'deploy.yml', token: TOKEN, inputs: 'environment: staging\nversion: "1"' },
      env(r),
    );
    const run = github.runs().at(-1)!;
    expect(result.exitCode).toBe(0);
    expect(result.outputs['run-id']).toBe(String(run.id));
    expect(result.stdout).toContain(
      'does not know return_run_details (GitHub Enterprise Server before 3.21)',
    );
    expect(run.displayTitle).toMatch(/^Deploy staging \[[0-9a-f-]{36}\]$/);
  });

  test('the token never appears in the output, even when an error message carries it', async () => {
    const r = await repo();
    github.failNext('repos/get-content', 403, `access denied for token ${TOKEN}`);
    const result = await runAction('dispatch', { workflow: 'deploy.yml', token: TOKEN }, env(r));
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toContain(`::add-mask::${TOKEN}`);
    expect(result.stdout).toContain(
      `::error::reading .github/workflows/deploy.yml at refs/heads/main of ${r} failed (HTTP 403): access denied for token ***; the token needs contents: read`,
    );
    expect(result.stdout.replace(`::add-mask::${TOKEN}`, '') + result.stderr).not.toContain(TOKEN);
  });
});

describe('kube-actions dispatch (bundled CLI)', () => {
  const cli = (args: string[], r: string) =>
    promisify(execFile)(
      NODE24,
      [resolve(import.meta.dirname, '../../dist/cli/index.js'), 'dispatch', ...args],
      {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, GITHUB_TOKEN: TOKEN, GITHUB_REPOSITORY: r },
      },
    ).then(
      (o) => ({ code: 0, ...o }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: e.code,
        stdout: e.stdout,
        stderr: e.stderr,
      }),
    );

  test('dispatches with -f fields and prints the run and its jobs', async () => {
    const r = await repo();
    github.setRunScript(r, 'deploy.yml', PIPELINE);
    github.onRequest = () => {
      clock.t += 600_000;
    };
    const out = await cli(
      ['deploy.yml', '-f', 'environment=staging', '-f', 'version=3', '--api-url', github.apiURL],
      r,
    );
    const run = github.runs().at(-1)!;
    expect(out.code).toBe(0);
    const url = `${server.baseUrl}/${r}/actions/runs/${run.id}`;
    expect(out.stdout.split('\n')[0]).toBe(`run ${run.id} completed success ${url}`);
    expect(out.stdout).toMatch(/^JOB {6}CONCLUSION {3}DURATION {3}URL$/m);
    expect(out.stdout).toContain(`build    success      1m 01s     ${url}/job/${run.id * 100 + 1}`);
    expect(out.stderr).toContain('  deploy: success in 1m 01s');
    expect(out.stdout + out.stderr).not.toContain(TOKEN);
  });

  test('exit 1 on a failure, 2 on a usage error', async () => {
    const r = await repo();
    github.setRunScript(r, 'deploy.yml', {
      jobs: [{ name: 'deploy', steps: [{ name: 'Go', conclusion: 'failure' }] }],
    });
    github.onRequest = () => {
      clock.t += 600_000;
    };
    const failed = await cli(
      ['deploy.yml', '--inputs', 'environment: staging\nversion: "1"', '--api-url', github.apiURL, '--json'],
      r,
    );
    expect(failed.code).toBe(1);
    expect(JSON.parse(failed.stdout)).toMatchObject({
      status: 'completed',
      conclusion: 'failure',
      foundBy: 'return_run_details',
    });
    const usage = await cli(['deploy.yml', '-f', 'novalue', '--api-url', github.apiURL], r);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('kube-actions dispatch: --field must be KEY=VALUE, got "novalue"');
  });
});

describe('the GitHub stand-in keeps to the OpenAPI description', () => {
  test('every response it gave during these tests matched the description (with the local overrides)', () => {
    expect(github.requests.length).toBeGreaterThan(100);
    expect(github.violations).toEqual([]);
  });
});
