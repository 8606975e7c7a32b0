// Benchmark: GitHub API requests per dispatched-and-awaited run, against the local GitHub stand-in
// (real HTTP, every response checked against GitHub's OpenAPI description) on a simulated clock,
// so runs of minutes take milliseconds. For runs of several lengths it prints the requests made to
// check the inputs, dispatch, and wait, the poll intervals slept, requests per poll interval (goal:
// at most 1), list calls (goal: 0 when the dispatch names the run) and how long after the run
// completed the wait noticed. Baseline measured in the same run: polling the run and its jobs
// every 3 s, as `gh run watch` does. Then the GHES fallbacks: by distinct_id, and the only new run.
//
//   node bench/dispatch.ts
import { createGitHubClient } from '../src/core/github/client.ts';
import { dispatchAndWait, type DispatchAndWaitOptions } from '../src/core/github/dispatch.ts';
import type { Clock } from '../src/core/github/poll.ts';
import { GitHubStandIn, type RunScript } from '../test/cluster/github-api.ts';
import { GitServer } from '../test/cluster/git-server.ts';

class SimulatedClock implements Clock {
  t = Date.now();
  slept = 0;
  now(): number {
    return this.t;
  }
  sleep(ms: number): Promise<void> {
    this.slept++;
    this.t += ms;
    return Promise.resolve();
  }
}

const TOKEN = 'ghs_bench_' + 'b'.repeat(30);
const WORKFLOW = `name: Deploy
run-name: Deploy \${{ inputs.environment }} [\${{ inputs.distinct_id }}]
on:
  workflow_dispatch:
    inputs:
      environment: { type: choice, required: true, options: [staging, production] }
      distinct_id: { description: set by the dispatcher }
jobs: {}
`;
const PLAIN = WORKFLOW.replace(' [${{ inputs.distinct_id }}]', '').replace(/ {6}distinct_id:.*\n/, '');

/** A pipeline of `minutes` in all: queued 10 s, then build, test and deploy jobs of several steps. */
function pipeline(minutes: number): RunScript {
  const s = (minutes * 60 - 10) / 10; // ten equal shares
  return {
    queuedSeconds: 10,
    jobs: [
      {
        name: 'build',
        steps: [
          { name: 'Set up job', seconds: s / 4 },
          { name: 'Checkout', seconds: s / 4 },
          { name: 'Compile', seconds: s * 1.5 },
        ],
      },
      {
        name: 'test',
        queuedSeconds: s / 2,
        steps: [
          { name: 'Unit', seconds: s * 2 },
          { name: 'Integration', seconds: s * 2.5 },
        ],
      },
      {
        name: 'deploy',
        queuedSeconds: s / 2,
        steps: [
          { name: 'Roll out', seconds: s * 2 },
          { name: 'Verify', seconds: s },
        ],
      },
    ],
  };
}

function totalSeconds(script: RunScript): number {
  return (
    (script.queuedSeconds ?? 0) +
    (script.jobs ?? []).reduce(
      (t, j) => t + (j.queuedSeconds ?? 0) + j.steps.reduce((u, st) => u + (st.seconds ?? 1), 0),
      0,
    )
  );
}

const clock = new SimulatedClock();
const server = await GitServer.start();
const github = await GitHubStandIn.start(
  server,
  { [TOKEN]: { login: 'bench[bot]', id: 1, type: 'Bot' } },
  { clock },
);
const octokit = createGitHubClient({ token: TOKEN, apiURL: github.apiURL });
await server.createRepo('acme/app', {
  '.github/workflows/deploy.yml': WORKFLOW,
  '.github/workflows/plain.yml': PLAIN,
});

interface Measure {
  requests: number;
  setup: number;
  polling: number;
  lists: number;
  sleeps: number;
  noticedAfterS: number;
}

async function measure(minutes: number, overrides: Partial<DispatchAndWaitOptions> = {}): Promise<Measure> {
  const script = pipeline(minutes);
  github.setRunScript('acme/app', overrides.workflow ?? 'deploy.yml', script);
  const from = github.requests.length;
  const sleepsBefore = clock.slept;
  const { run, result } = await dispatchAndWait({
    octokit,
    owner: 'acme',
    repo: 'app',
    workflow: 'deploy.yml',
    ref: 'main',
    inputs: { environment: 'staging' },
    clock,
    timeoutMs: 3 * 3_600_000,
    ...overrides,
  });
  if (result.conclusion !== 'success') throw new Error(`run ${run.runId} concluded ${result.conclusion}`);
  const made = github.requests.slice(from);
  const created = github.runs().find((r) => r.id === run.runId)!.createdMs;
  return {
    requests: made.length,
    setup: made.length - result.requests,
    polling: result.requests,
    lists: made.filter((r) => r.operationId === 'actions/list-workflow-runs').length,
    sleeps: clock.slept - sleepsBefore,
    noticedAfterS: (clock.now() - (created + totalSeconds(script) * 1000)) / 1000,
  };
}

/** gh run watch's way: the run and its jobs every 3 s until it completes. */
async function baseline(minutes: number): Promise<{ requests: number; sleeps: number }> {
  github.setRunScript('acme/app', 'deploy.yml', pipeline(minutes));
  const { data } = await octokit.request(
    'POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches',
    {
      owner: 'acme',
      repo: 'app',
      workflow_id: 'deploy.yml',
      ref: 'main',
      inputs: { environment: 'staging', distinct_id: 'baseline' },
      return_run_details: true,
    },
  );
  const runId = (data as unknown as { workflow_run_id: number }).workflow_run_id;
  let requests = 1;
  let sleeps = 0;
  for (;;) {
    const run = await octokit.rest.actions.getWorkflowRun({ owner: 'acme', repo: 'app', run_id: runId });
    await octokit.rest.actions.listJobsForWorkflowRun({ owner: 'acme', repo: 'app', run_id: runId });
    requests += 2;
    if (run.data.status === 'completed') return { requests, sleeps };
    await clock.sleep(3000);
    sleeps++;
  }
}

const rows: string[][] = [
  [
    'run length',
    'requests',
    'setup+dispatch',
    'polling',
    'poll intervals',
    'req/interval',
    'list calls',
    'noticed after',
    'gh run watch',
  ],
];
for (const minutes of [1, 5, 15, 60]) {
  const m = await measure(minutes);
  const base = await baseline(minutes);
  rows.push([
    `${minutes} min`,
    String(m.requests),
    String(m.setup),
    String(m.polling),
    String(m.sleeps),
    (m.polling / m.sleeps).toFixed(2),
    String(m.lists),
    `${m.noticedAfterS.toFixed(1)} s`,
    `${base.requests} (${(base.requests / m.requests).toFixed(1)}x)`,
  ]);
}

github.rejectRunDetails = true;
const byId = await measure(15);
const only = await measure(15, { workflow: 'plain.yml' });
github.rejectRunDetails = false;

const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
console.log("dispatch + wait, GitHub with return_run_details (requests from the stand-in's log):");
for (const r of rows) console.log('  ' + r.map((c, i) => c.padEnd(widths[i]!)).join('  '));
console.log('\nGHES without return_run_details, 15 min run:');
console.log(
  `  by distinct_id:      ${byId.requests} requests (${byId.lists} list call${byId.lists === 1 ? '' : 's'}, ${byId.setup} before polling)`,
);
console.log(
  `  only new run:        ${only.requests} requests (${only.lists} list calls: seen, then confirmed one interval later)`,
);
console.log(`\nstand-in contract violations: ${github.violations.length}`);

await github.stop();
await server.stop();
if (github.violations.length) {
  console.error(github.violations.join('\n'));
  process.exit(1);
}
