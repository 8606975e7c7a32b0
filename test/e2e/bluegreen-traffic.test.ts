// Real traffic through a blue/green Rollout: until promotion the active Service answers only the
// old version and the preview Service only the new one; at promotion the active Service switches
// with no failed request, while a bounded stream of requests runs through it.
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { describeOnRealNode, useTestNamespace, type RealNodeInfo } from '../cluster/testing.ts';
import { appRollout, appService, startAppEnvironment, type AppEnvironment } from './app-env.ts';
import { ask, sample } from './traffic.ts';

function manifests(node: RealNodeInfo, image: string): Record<string, string> {
  const strategy = {
    blueGreen: {
      activeService: 'web-active',
      previewService: 'web-preview',
      autoPromotionEnabled: false,
      scaleDownDelaySeconds: 30,
    },
  };
  return {
    'web/rollout.yaml': appRollout(node, image, 2, strategy),
    'web/active.yaml': appService('web-active'),
    'web/preview.yaml': appService('web-preview'),
  };
}

describeOnRealNode('real traffic through a blue/green Rollout', (node) => {
  const ns = useTestNamespace('e2e-bluegreen');
  let env: AppEnvironment;

  beforeAll(async () => {
    env = await startAppEnvironment(node, ns, ['v1', 'v2'], (image) => manifests(node, image));
    await env.untilRollout(
      (ro) => ro.status?.phase === 'Healthy' && ro.status.availableReplicas === 2,
      'v1 healthy',
      180_000,
    );
  }, 600_000);
  afterAll(() => env?.stop());

  test('active answers v1 and preview v2 until promotion; the switch fails no request', async () => {
    const active = await env.clusterIP('web-active');
    const preview = await env.clusterIP('web-preview');
    await env.settled('web-active');
    expect(await sample(active, 50)).toEqual({ v1: 50 });

    await env.deploy('v2');
    await env.untilRollout((ro) => ro.status?.phase === 'Paused', 'paused before promotion', 180_000);
    await env.settled('web-active');
    await env.settled('web-preview');
    expect(await sample(active, 100)).toEqual({ v1: 100 });
    expect(await sample(preview, 100)).toEqual({ v2: 100 });

    // A stream through the active Service across the switch: at most 3,000 requests or 60 s.
    const answers: string[] = [];
    let stop = false;
    const stream = (async () => {
      const until = Date.now() + 60_000;
      while (!stop && answers.length < 3000 && Date.now() < until) {
        const { status, body } = await ask(active);
        answers.push(status === 200 ? body : `failed ${status}`);
      }
    })();
    await env.rolloutCli('promote');
    await env.untilRollout(
      (ro) => ro.status?.phase === 'Healthy' && ro.status.stableRS === ro.status.currentPodHash,
      'v2 active',
    );
    await env.settled('web-active');
    // Until the stream has seen the new version settle in.
    while (answers.slice(-50).filter((a) => a === 'v2').length < 50 && answers.length < 3000) {
      await new Promise((r) => setTimeout(r, 50));
    }
    stop = true;
    await stream;

    expect(answers.filter((a) => a.startsWith('failed'))).toEqual([]);
    expect(answers[0]).toBe('v1');
    expect(answers.at(-1)).toBe('v2');
    expect(await sample(active, 100)).toEqual({ v2: 100 });
  });
});
