// A GitHub workflow as a canary's analysis: the controller (the CLI, as it ships) dispatches
// smoke-test.yml on the local GitHub stand-in for each measurement, with the canary's pod-template
// hash as an input, and waits for the run. A passing run promotes the canary, a failing one aborts
// it, and aborting a Rollout whose run is still going cancels that run. The token comes from a
// Secret and appears nowhere in what the controller writes.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { KubeClient, PatchType } from '../../src/core/kube/client.ts';
import { ANALYSIS_RUN, ANALYSIS_TEMPLATE, type AnalysisRun } from '../../src/controller/analysis/types.ts';
import { ROLLOUT, type Rollout } from '../../src/controller/rollout/types.ts';
import { CLI, startControllerProcess, type ControllerProcess } from '../cluster/controller-process.ts';
import { installCRDs } from '../cluster/crds.ts';
import { GitHubStandIn, type RunScript } from '../cluster/github-api.ts';
import { GitServer } from '../cluster/git-server.ts';
import { NODE24 } from '../cluster/run-action.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const run = promisify(execFile);

const ns = useTestNamespace('analysis-gh');
const TOKEN = 'ghs_' + 'a5'.repeat(18);
const BOT = { login: 'kube-actions[bot]', id: 41898282, type: 'Bot' as const };
const REPO = 'acme/app';
const SMOKE = `name: Smoke test
on:
  workflow_dispatch:
    inputs:
      hash: { description: the canary's pod-template hash, required: true }
      target: { type: choice, options: [canary, preview], default: canary }
jobs:
  smoke: { runs-on: ubuntu-24.04, steps: [{ run: ./smoke.sh }] }
`;
const PASS: RunScript = { jobs: [{ name: 'smoke', steps: [{ name: 'Set up job' }, { name: 'Smoke' }] }] };
const FAIL: RunScript = {
  jobs: [{ name: 'smoke', steps: [{ name: 'Set up job' }, { name: 'Smoke', conclusion: 'failure' }] }],
};
const HANG: RunScript = {
  jobs: [{ name: 'smoke', steps: [{ name: 'Set up job' }, { name: 'Smoke' }] }],
  hang: true,
};

let client: KubeClient;
let git: GitServer;
let github: GitHubStandIn;
let controller: ControllerProcess;
let script: RunScript = PASS;

beforeAll(async () => {
  await installCRDs(ns.kc);
  client = new KubeClient(ns.kc);
  git = await GitServer.start();
  await git.createRepo(REPO, { '.github/workflows/smoke-test.yml': SMOKE });
  github = await GitHubStandIn.start(git, { [TOKEN]: BOT });
  github.setRunScript(REPO, 'smoke-test.yml', () => script);
  await client.create({ apiVersion: 'v1', resource: 'secrets' }, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'github', namespace: ns.name },
    stringData: { token: TOKEN },
  } as never);
  await client.create(ANALYSIS_TEMPLATE, {
    apiVersion: ANALYSIS_TEMPLATE.apiVersion,
    kind: 'AnalysisTemplate',
    metadata: { name: 'smoke', namespace: ns.name },
    spec: {
      args: [{ name: 'hash' }],
      metrics: [
        {
          name: 'smoke-test',
          provider: {
            githubWorkflow: {
              repository: REPO,
              workflow: 'smoke-test.yml',
              ref: 'main',
              inputs: { hash: '{{args.hash}}', target: 'canary' },
              apiURL: github.apiURL,
              tokenSecretRef: { name: 'github' },
            },
          },
        },
      ],
    },
  } as never);
  controller = await startControllerProcess(['controller', '--leader-elect=false', `--namespace=${ns.name}`]);
  await client.create(ROLLOUT, {
    apiVersion: ROLLOUT.apiVersion,
    kind: 'Rollout',
    metadata: { name: 'web', namespace: ns.name },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      template: image('registry.example/web:1'),
      strategy: {
        canary: {
          steps: [
            { setWeight: 50 },
            {
              analysis: {
                templates: [{ templateName: 'smoke' }],
                args: [{ name: 'hash', valueFrom: { podTemplateHashValue: 'Latest' } }],
              },
            },
          ],
        },
      },
    },
  } as never);
  await untilRollout((ro) => ro.status?.phase === 'Healthy', 'the first revision healthy');
}, 120_000);
afterAll(async () => {
  await controller?.stop();
  await github?.stop();
  await git?.stop();
  await client?.close();
});

function image(name: string) {
  return { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: name }] } };
}

function untilRollout(check: (ro: Rollout) => boolean, what: string, timeoutMs = 60_000): Promise<Rollout> {
  return eventually(
    what,
    async () => {
      const ro = await client.get<Rollout>(ROLLOUT, ns.name, 'web');
      return check(ro) ? ro : undefined;
    },
    timeoutMs,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\ncontroller log:\n${controller.logs.slice(-20).join('\n')}`, {
      cause: err,
    });
  });
}

async function deploy(tag: string): Promise<Rollout> {
  await client.patch(
    ROLLOUT,
    ns.name,
    'web',
    { spec: { template: image(`registry.example/web:${tag}`) } },
    PatchType.merge,
  );
  return untilRollout(
    (ro) =>
      ro.status?.observedGeneration === String(ro.metadata.generation) &&
      ro.status.currentPodHash !== ro.status.stableRS,
    `revision ${tag} started`,
  );
}

const stepRun = async (ro: Rollout): Promise<AnalysisRun> =>
  client.get<AnalysisRun>(ANALYSIS_RUN, ns.name, ro.status!.canary!.currentStepAnalysisRunStatus!.name);

describe('the githubWorkflow analysis provider', () => {
  test('a passing smoke-test run, dispatched with the canary hash, promotes the canary', async () => {
    script = PASS;
    const before = github.runs().length;
    const started = await deploy('2');
    const done = await untilRollout(
      (ro) => ro.status?.phase === 'Healthy' && ro.status.stableRS === started.status!.currentPodHash,
      'the canary promoted',
    );
    // One measurement, one dispatch, for the canary's pods: a reconcile on a copy of the Rollout
    // read before it saw the new revision neither starts a second run nor names the old hash.
    const dispatchedNow = github.runs().slice(before);
    expect(dispatchedNow).toHaveLength(1);
    const dispatched = dispatchedNow[0]!;
    expect(dispatched.inputs).toEqual({ hash: done.status!.currentPodHash, target: 'canary' });
    const run = await stepRun(done);
    expect(run.status?.phase).toBe('Successful');
    const m = run.status!.metricResults![0]!.measurements![0]!;
    expect(m).toMatchObject({
      phase: 'Successful',
      value: 'success',
      metadata: {
        runId: String(dispatched.id),
        runUrl: expect.stringContaining(`/actions/runs/${dispatched.id}`),
      },
    });
    expect(JSON.stringify(run)).not.toContain(TOKEN);
  });

  test('a failing run aborts the Rollout back to stable', async () => {
    script = FAIL;
    await deploy('3');
    const aborted = await untilRollout((ro) => ro.status?.abort === true, 'the Rollout aborted');
    expect(aborted.status?.phase).toBe('Degraded');
    const run = await stepRun(aborted);
    expect(run.status?.phase).toBe('Failed');
    expect(run.status!.metricResults![0]!.measurements![0]).toMatchObject({
      phase: 'Failed',
      value: 'failure',
    });
  });

  test('aborting the Rollout while its run is going cancels the run', async () => {
    script = HANG;
    const before = github.runs().length;
    await deploy('4');
    await eventually(
      'the run dispatched',
      () => Promise.resolve(github.runs().length > before ? true : undefined),
      60_000,
    );
    const hanging = github.runs().at(-1)!;
    await run(NODE24, [CLI, 'rollout', 'abort', 'web', '-n', ns.name]);
    await eventually(
      'the workflow run cancelled',
      () => Promise.resolve(github.runs().find((r) => r.id === hanging.id)?.cancelledMs ? true : undefined),
      60_000,
    ).catch(async (err: Error) => {
      const runs = await client.request<{ items: AnalysisRun[] }>(
        'GET',
        `/apis/kube-actions.dev/v1alpha1/namespaces/${ns.name}/analysisruns`,
      );
      const ro = await client.get<Rollout>(ROLLOUT, ns.name, 'web');
      throw new Error(
        `${err.message}\nrollout status: ${JSON.stringify(ro.status)}\nruns: ${JSON.stringify(runs.items.map((r) => ({ name: r.metadata.name, spec: r.spec.terminate, status: r.status })))}\n${controller.logs.slice(-30).join('\n')}`,
        { cause: err },
      );
    });
    const terminated = await eventually(
      'the analysis run terminated',
      async () => {
        const runs = await client.request<{ items: AnalysisRun[] }>(
          'GET',
          `/apis/kube-actions.dev/v1alpha1/namespaces/${ns.name}/analysisruns`,
        );
        const r = runs.items.find((i) =>
          i.spec.args?.some((a) => a.value === (hanging.inputs.hash as string)),
        );
        return r?.status?.phase && r.status.phase !== 'Running' ? r : undefined;
      },
      60_000,
    );
    expect(terminated.status!.metricResults![0]!.measurements!.at(-1)).toMatchObject({
      message: 'Metric Terminated',
    });
  });
});
