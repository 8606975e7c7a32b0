// Real traffic through a canary: the app's images built by our build action and pulled by the real
// node's containerd, deployed by the controller (a process on the host) from a git repository
// through an Application as a canary Rollout, and asked over HTTP through the Service's ClusterIP
// (kube-proxy) at each step. The share of answers from the new version follows the weight within
// sampling error; an abort sends every request back to the stable version.
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import type { Rollout } from '../../src/controller/rollout/types.ts';
import { describeOnRealNode, useTestNamespace, type RealNodeInfo } from '../cluster/testing.ts';
import { appRollout, appService, startAppEnvironment, type AppEnvironment } from './app-env.ts';
import { sample } from './traffic.ts';

const SAMPLES = 200;

function manifests(node: RealNodeInfo, image: string): Record<string, string> {
  const strategy = {
    canary: { steps: [{ setWeight: 25 }, { pause: {} }, { setWeight: 50 }, { pause: {} }] },
  };
  return { 'web/rollout.yaml': appRollout(node, image, 4, strategy), 'web/service.yaml': appService('web') };
}

describeOnRealNode('real traffic through a canary Rollout', (node) => {
  const ns = useTestNamespace('e2e-canary');
  let env: AppEnvironment;
  let ip: string;

  beforeAll(async () => {
    env = await startAppEnvironment(node, ns, ['v1', 'v2', 'v3'], (image) => manifests(node, image));
    await env.untilRollout(
      (ro) => ro.status?.phase === 'Healthy' && ro.status.availableReplicas === 4,
      'v1 healthy',
      180_000,
    );
    ip = await env.clusterIP('web');
  }, 600_000);
  afterAll(() => env?.stop());

  const pausedAt = (step: number) => (ro: Rollout) =>
    ro.status?.currentStepIndex === step && (ro.status.pauseConditions?.length ?? 0) > 0;

  test('v1 serves every request before the canary starts', async () => {
    await env.settled('web');
    expect(await sample(ip, 50)).toEqual({ v1: 50 });
  });

  test('setWeight 25 -> 50 -> 100: the new version answers its share, then everything', async () => {
    await env.deploy('v2');
    await env.untilRollout(pausedAt(1), 'paused at 25%', 180_000);
    await env.settled('web');
    const at25 = await sample(ip, SAMPLES);
    // 1 of 4 pods: 25% of requests, give or take sampling (3 standard deviations of 200 draws).
    expect(at25.failed ?? 0).toBe(0);
    expect(at25.v2! / SAMPLES).toBeGreaterThan(0.13);
    expect(at25.v2! / SAMPLES).toBeLessThan(0.37);

    await env.rolloutCli('promote');
    await env.untilRollout(pausedAt(3), 'paused at 50%');
    await env.settled('web');
    const at50 = await sample(ip, SAMPLES);
    expect(at50.failed ?? 0).toBe(0);
    expect(at50.v2! / SAMPLES).toBeGreaterThan(0.35);
    expect(at50.v2! / SAMPLES).toBeLessThan(0.65);

    await env.rolloutCli('promote');
    await env.untilRollout(
      (ro) => ro.status?.phase === 'Healthy' && ro.status.stableRS === ro.status.currentPodHash,
      'v2 stable',
    );
    await env.settled('web');
    expect(await sample(ip, SAMPLES)).toEqual({ v2: SAMPLES });
  });

  test('abort: every request goes back to the stable version', async () => {
    // Whatever is stable now (v2 after the test above), so this test stands on its own.
    await env.untilRollout(
      (ro) => ro.status?.phase === 'Healthy' || ro.status?.phase === 'Paused',
      'a settled Rollout',
    );
    await env.settled('web');
    const stable = Object.keys(await sample(ip, 20));
    expect(stable).toHaveLength(1);
    await env.deploy('v3');
    await env.untilRollout(pausedAt(1), 'v3 paused at 25%', 180_000);
    await env.settled('web');
    await env.routed(ip, [stable[0]!, 'v3']);
    await env.rolloutCli('abort');
    await env.untilRollout((ro) => ro.status?.abort === true && ro.status.phase === 'Degraded', 'aborted');
    await env.settled('web');
    expect(await sample(ip, SAMPLES)).toEqual({ [stable[0]!]: SAMPLES });
  });
});
