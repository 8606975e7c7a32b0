// Analysis against real containers: a canary step runs a job-provider metric whose Job runs on the
// real node (kwok's simulated Jobs can only succeed). A container exiting 0 lets the canary finish;
// one exiting 1 fails the metric and aborts the Rollout back to the stable version.
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { stringify } from 'yaml';
import { describeOnRealNode, useTestNamespace, type RealNodeInfo } from '../cluster/testing.ts';
import { appRollout, appService, startAppEnvironment, type AppEnvironment } from './app-env.ts';
import { sample } from './traffic.ts';

function manifests(node: RealNodeInfo, image: string, exitCode: number): Record<string, string> {
  const placement = { tolerations: node.tolerations, nodeSelector: node.nodeSelector };
  const template = {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'AnalysisTemplate',
    metadata: { name: 'smoke' },
    spec: {
      args: [{ name: 'image' }, { name: 'code' }],
      metrics: [
        {
          name: 'smoke',
          provider: {
            job: {
              spec: {
                backoffLimit: 0,
                template: {
                  spec: {
                    ...placement,
                    restartPolicy: 'Never',
                    containers: [
                      {
                        name: 'smoke',
                        image: '{{args.image}}',
                        command: [
                          '/usr/local/bin/node',
                          '-e',
                          'process.exit(Number(process.argv[1]))',
                          '{{args.code}}',
                        ],
                      },
                    ],
                  },
                },
              },
            },
          },
        },
      ],
    },
  };
  const strategy = {
    canary: {
      steps: [
        { setWeight: 50 },
        {
          analysis: {
            templates: [{ templateName: 'smoke' }],
            args: [
              { name: 'image', value: image },
              { name: 'code', value: String(exitCode) },
            ],
          },
        },
      ],
    },
  };
  return {
    'web/analysis.yaml': stringify(template),
    'web/rollout.yaml': appRollout(node, image, 2, strategy),
    'web/service.yaml': appService('web'),
  };
}

describeOnRealNode('job-provider analysis on real containers', (node) => {
  const ns = useTestNamespace('e2e-analysis');
  let env: AppEnvironment;
  // The exit code each version's analysis Job is told to exit with.
  const codes: Record<string, number> = { v1: 0, v2: 0, v3: 1 };

  beforeAll(async () => {
    env = await startAppEnvironment(node, ns, ['v1', 'v2', 'v3'], (image, version) =>
      manifests(node, image, codes[version]!),
    );
    await env.untilRollout((ro) => ro.status?.phase === 'Healthy', 'v1 healthy', 180_000);
  }, 600_000);
  afterAll(() => env?.stop());

  test('a Job exiting 0 passes the analysis and the canary completes', async () => {
    await env.deploy('v2');
    const done = await env.untilRollout(
      (ro) => ro.status?.phase === 'Healthy' && ro.status.stableRS === ro.status.currentPodHash,
      'v2 promoted by a passing analysis',
      180_000,
    );
    expect(done.status?.abort).toBeFalsy();
    await env.settled('web');
    expect(await sample(await env.clusterIP('web'), 50)).toEqual({ v2: 50 });
  });

  test('a Job exiting 1 fails the analysis and aborts the Rollout to stable', async () => {
    await env.deploy('v3');
    const aborted = await env.untilRollout(
      (ro) => ro.status?.abort === true,
      'v3 aborted by a failing analysis',
      180_000,
    );
    expect(aborted.status?.phase).toBe('Degraded');
    expect(aborted.status?.canary?.currentStepAnalysisRunStatus?.status).toBe('Failed');
    await env.settled('web');
    expect(await sample(await env.clusterIP('web'), 50)).toEqual({ v2: 50 });
  });
});
