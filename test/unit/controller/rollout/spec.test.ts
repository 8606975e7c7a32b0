// InvalidSpec: loose or wrong specs and missing references are a condition with a message (and an
// observedGeneration, so `rollout status` can fail on it), never a thrown error retried forever.
import { describe, expect, test } from '@jest/globals';
import { World } from './world.ts';

function invalidMessage(world: World): string | undefined {
  world.reconcile();
  return world.ro.status?.conditions?.find((c) => c.type === 'InvalidSpec' && c.status === 'True')?.message;
}

describe('InvalidSpec', () => {
  test.each([
    ['maxSurge: "lots"', { maxSurge: 'lots' }, /strategy\.canary\.maxSurge: invalid value "lots"/],
    ['maxUnavailable: 1.5', { maxUnavailable: 1.5 }, /strategy\.canary\.maxUnavailable: invalid value 1\.5/],
    ['maxUnavailable: ""', { maxUnavailable: '' }, /maxUnavailable: invalid value ""/],
    ['a string pause', { steps: [{ pause: '5m' }] }, /steps\[0\]\.pause must be an object/],
    [
      'a pause of nonsense',
      { steps: [{ pause: { duration: 'soon' } }] },
      /steps\[0\]\.pause: invalid pause duration "soon"/,
    ],
    ['an unknown step field', { steps: [{ setWeigth: 20 }] }, /steps\[0\] has unknown field setWeigth/],
    ['a step that is not an object', { steps: ['setWeight: 20'] }, /steps\[0\] must be an object/],
    [
      'setWeight 150',
      { steps: [{ setWeight: 150 }] },
      /steps\[0\]\.setWeight must be an integer from 0 to 100/,
    ],
    [
      'a negative scale-down delay',
      { scaleDownDelaySeconds: -1 },
      /scaleDownDelaySeconds must be a non-negative integer/,
    ],
  ])('%s', (_name, canary, message) => {
    const world = new World({ strategy: { canary: canary as never } });
    expect(invalidMessage(world)).toMatch(message);
    expect(world.ro.status).toMatchObject({ phase: 'Degraded', observedGeneration: '1' });
    // Nothing was created or scaled for it.
    expect(world.rss).toEqual([]);
  });

  test('progressDeadlineSeconds: 0 and replicas: -1 are refused', () => {
    const world = new World({ replicas: -1, progressDeadlineSeconds: 0, strategy: { canary: {} } });
    const message = invalidMessage(world);
    expect(message).toMatch(/spec\.replicas must be a non-negative integer/);
    expect(message).toMatch(/spec\.progressDeadlineSeconds must be a positive integer/);
  });

  test('a Service named by the strategy that appears later clears the condition by itself', () => {
    const world = new World({ strategy: { canary: { stableService: 'stable', canaryService: 'canary' } } });
    world.service('stable');
    expect(invalidMessage(world)).toBe('service "canary" does not exist in namespace ns');
    world.service('canary');
    world.settle();
    expect(world.ro.status?.conditions?.some((c) => c.type === 'InvalidSpec')).toBe(false);
    expect(world.ro.status?.phase).toBe('Healthy');
  });

  test('a workloadRef Deployment that appears later', () => {
    const world = new World({
      template: undefined,
      workloadRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'legacy' },
      strategy: { canary: {} },
    });
    expect(invalidMessage(world)).toBe(
      'deployment "legacy" (spec.workloadRef) does not exist in namespace ns',
    );
    world.deployment = {
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'web' } },
        template: {
          metadata: { labels: { app: 'web' } },
          spec: { containers: [{ name: 'main', image: 'web:1' }] },
        },
      },
    };
    world.settle();
    expect(world.ro.status?.phase).toBe('Healthy');
  });

  test('missing templates and Secrets gathered are reported with the rest', () => {
    const world = new World({ strategy: { canary: {} } });
    world.missing = ['analysistemplate "health" does not exist in namespace ns'];
    expect(invalidMessage(world)).toBe('analysistemplate "health" does not exist in namespace ns');
    world.missing = [];
    world.settle();
    expect(world.ro.status?.phase).toBe('Healthy');
  });
});

describe('workloadRef scaleDown', () => {
  const deployment = () => ({
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: { containers: [{ name: 'main', image: 'web:1' }] },
      },
    },
  });
  test.each([
    ['onsuccess', [2, 0]],
    ['progressively', [2, 0]],
    ['never', [2, 2]],
  ] as const)('%s', (mode, [whileStarting, whenHealthy]) => {
    const world = new World({
      replicas: 2,
      template: undefined,
      workloadRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'legacy', scaleDown: mode },
      strategy: { canary: {} },
    });
    world.deployment = deployment();
    world.reconcile(); // the rollout's pods are not up yet: the Deployment keeps serving
    expect(world.deployment.spec.replicas).toBe(whileStarting);
    world.settle();
    expect(world.ro.status?.phase).toBe('Healthy');
    expect(world.deployment.spec.replicas).toBe(whenHealthy);
  });

  test('progressively hands pods over as the rollout gets them', () => {
    const world = new World({
      replicas: 4,
      template: undefined,
      workloadRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'legacy', scaleDown: 'progressively' },
      strategy: { canary: {} },
    });
    world.deployment = { ...deployment(), spec: { ...deployment().spec, replicas: 4 } };
    world.reconcile();
    world.rss[0]!.status = { replicas: 4, readyReplicas: 1, availableReplicas: 1 };
    world.reconcile(); // summarize counted 1 available last time
    world.reconcile();
    expect(world.deployment.spec.replicas).toBe(3);
  });
});
