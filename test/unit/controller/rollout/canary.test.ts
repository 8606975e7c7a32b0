// The canary decision, transition by transition, on a model cluster and a fake clock.
import { describe, expect, test } from '@jest/globals';
import { MAX_REQUEUE_MS } from '../../../../src/controller/rollout/plan.ts';
import { SCALE_DOWN_DEADLINE } from '../../../../src/controller/rollout/types.ts';
import { hashOf, World } from './world.ts';

const h1 = hashOf('web:1');

function basic(steps: unknown[], extra: Record<string, unknown> = {}): World {
  const world = new World({
    strategy: {
      canary: { stableService: 'stable', canaryService: 'canary', steps: steps as never, ...extra },
    },
  });
  world.service('stable', 'canary');
  world.settle();
  return world;
}

describe('canary without a router', () => {
  test('the first revision skips the steps: stable at once, Healthy, both Services on it', () => {
    const world = basic([{ setWeight: 25 }, { pause: {} }]);
    expect(world.ro.status).toMatchObject({
      phase: 'Healthy',
      stableRS: h1,
      currentPodHash: h1,
      currentStepIndex: 2,
    });
    expect(world.counts()).toEqual({ [h1]: 4 });
    expect([world.selector('stable'), world.selector('canary')]).toEqual([h1, h1]);
  });

  test('setWeight by pods, an indefinite pause held until promoted, a timed pause requeued to the millisecond', () => {
    const world = basic([
      { setWeight: 25 },
      { pause: {} },
      { setWeight: 50 },
      { pause: { duration: '30s' } },
    ]);
    const h2 = world.setImage('web:2');
    let plan = world.settle();
    expect(world.ro.status).toMatchObject({
      phase: 'Paused',
      currentPodHash: h2,
      stableRS: h1,
      currentStepIndex: 1,
    });
    expect(world.counts()).toEqual({ [h1]: 3, [h2]: 1 });
    expect([world.selector('stable'), world.selector('canary')]).toEqual([h1, h2]);
    expect(plan.requeueAfter).toBeUndefined();
    // Held however often it is looked at.
    world.advance(3_600_000);
    expect(world.settle().status).toBeUndefined();
    // Promote: the CLI removes the pause condition.
    world.editStatus({ pauseConditions: null });
    world.reconcile();
    world.ready();
    plan = world.reconcile();
    expect(world.ro.status).toMatchObject({ phase: 'Paused', currentStepIndex: 3 });
    expect(world.counts()).toEqual({ [h1]: 2, [h2]: 2 });
    expect(plan.requeueAfter).toBe(30_000);
    world.advance(29_999);
    expect(world.reconcile().requeueAfter).toBe(1);
    world.advance(1);
    world.settle();
    expect(world.ro.status).toMatchObject({ phase: 'Healthy', stableRS: h2, currentStepIndex: 4 });
    expect(world.counts()).toEqual({ [h1]: 0, [h2]: 4 });
    expect([world.selector('stable'), world.selector('canary')]).toEqual([h2, h2]);
  });

  test('abort: traffic and pods back to stable, Degraded; retry starts the steps again', () => {
    const world = basic([{ setWeight: 50 }, { pause: {} }]);
    const h2 = world.setImage('web:2');
    world.settle();
    world.editStatus({ abort: true });
    world.settle();
    // As Argo: the step index back at 0, and the canary Service on the stable pods too.
    expect(world.ro.status).toMatchObject({
      phase: 'Degraded',
      abort: true,
      message: 'RolloutAborted',
      currentStepIndex: 0,
    });
    expect(world.counts()).toEqual({ [h1]: 4, [h2]: 0 });
    expect([world.selector('stable'), world.selector('canary')]).toEqual([h1, h1]);
    world.editStatus({ abort: null, abortedAt: null, currentStepIndex: 0 });
    world.settle();
    expect(world.ro.status).toMatchObject({ phase: 'Paused', currentStepIndex: 1 });
    expect(world.counts()).toEqual({ [h1]: 2, [h2]: 2 });
  });

  test('no steps: the new revision becomes stable at once, with no step index (as Argo)', () => {
    const world = basic([]);
    expect(world.ro.status?.currentStepIndex).toBeUndefined();
    const h2 = world.setImage('web:2');
    world.settle();
    expect(world.ro.status).toMatchObject({ phase: 'Healthy', stableRS: h2 });
    expect(world.ro.status?.currentStepIndex).toBeUndefined();
    expect(world.counts()).toEqual({ [h1]: 0, [h2]: 4 });
  });

  test('promote --full skips the remaining steps', () => {
    const world = basic([{ setWeight: 25 }, { pause: {} }, { setWeight: 50 }, { pause: {} }]);
    const h2 = world.setImage('web:2');
    world.settle();
    world.editStatus({ promoteFull: true });
    world.settle();
    expect(world.ro.status).toMatchObject({ phase: 'Healthy', stableRS: h2 });
    expect(world.ro.status?.promoteFull).toBeUndefined();
  });

  test('undo: back to the stable template is immediate, no steps', () => {
    const world = basic([{ setWeight: 25 }, { pause: {} }]);
    const h2 = world.setImage('web:2');
    world.settle();
    world.setImage('web:1');
    world.settle();
    expect(world.ro.status).toMatchObject({ phase: 'Healthy', stableRS: h1, currentPodHash: h1 });
    expect(world.counts()).toEqual({ [h1]: 4, [h2]: 0 });
  });

  test('a third revision mid-canary scales the overtaken second one down at once and starts over', () => {
    const world = basic([{ setWeight: 50 }, { pause: {} }]);
    const h2 = world.setImage('web:2');
    world.settle();
    expect(world.counts()).toEqual({ [h1]: 2, [h2]: 2 });
    const h3 = world.setImage('web:3');
    world.reconcile();
    expect(world.counts()[h2]).toBe(0);
    world.settle();
    expect(world.counts()).toEqual({ [h1]: 2, [h2]: 0, [h3]: 2 });
    expect(world.ro.status).toMatchObject({ currentPodHash: h3, stableRS: h1, currentStepIndex: 1 });
    expect(world.selector('canary')).toBe(h3);
  });

  test('an HPA scaling mid-rollout keeps the weight: 25% of 8', () => {
    const world = basic([{ setWeight: 25 }, { pause: {} }]);
    const h2 = world.setImage('web:2');
    world.settle();
    world.ro = { ...world.ro, spec: { ...world.ro.spec, replicas: 8 } };
    world.settle();
    expect(world.counts()).toEqual({ [h1]: 6, [h2]: 2 });
  });

  test('maxSurge/maxUnavailable: never more than replicas + surge, never fewer available than replicas - unavailable', () => {
    const world = basic([{ setWeight: 100 }], { maxSurge: 1, maxUnavailable: 0 });
    const h2 = world.setImage('web:2');
    for (let i = 0; i < 20 && world.ro.status?.stableRS !== h2; i++) {
      world.reconcile();
      const total = Object.values(world.counts()).reduce((a, b) => a + b, 0);
      expect(total).toBeLessThanOrEqual(5);
      // Pods come up one reconcile later; the ones scaled away go at once.
      const available = world.rss.reduce(
        (n, rs) => n + Math.min(rs.status?.availableReplicas ?? 0, rs.spec.replicas ?? 0),
        0,
      );
      expect(available).toBeGreaterThanOrEqual(4);
      world.ready();
    }
    expect(world.ro.status?.stableRS).toBe(h2);
  });

  test('revisionHistoryLimit: scaled-down old ReplicaSets beyond the limit are deleted, oldest first', () => {
    const world = basic([], {});
    world.ro.spec.revisionHistoryLimit = 1;
    for (const image of ['web:2', 'web:3', 'web:4']) {
      world.setImage(image);
      world.settle();
    }
    expect(Object.keys(world.counts()).sort()).toEqual([hashOf('web:3'), hashOf('web:4')].sort());
  });
});

describe('canary analysis', () => {
  const analysisStep = { analysis: { templates: [{ templateName: 'health' }] } };

  test('a step run: named after revision and step, Successful moves on, Failed aborts with the message', () => {
    const world = basic([{ setWeight: 50 }, analysisStep, { pause: {} }]);
    const h2 = world.setImage('web:2');
    world.settle();
    const run = `web-${h2}-1`;
    expect(world.runs.map((r) => r.name)).toEqual([run]);
    expect(world.ro.status?.canary?.currentStepAnalysisRunStatus).toEqual({ name: run, status: 'Pending' });
    world.finishRun(run, 'Successful');
    world.settle();
    expect(world.ro.status).toMatchObject({ phase: 'Paused', currentStepIndex: 2 });

    const h3 = world.setImage('web:3');
    world.settle();
    world.finishRun(`web-${h3}-1`, 'Failed', 'errors 7 > 1');
    world.settle();
    expect(world.ro.status?.message).toBe(`RolloutAborted: analysis run web-${h3}-1 failed: errors 7 > 1`);
    expect(world.counts()[h3]).toBe(0);
  });

  test('Inconclusive pauses (InconclusiveAnalysisRun) until promoted', () => {
    const world = basic([{ setWeight: 50 }, analysisStep]);
    const h2 = world.setImage('web:2');
    world.settle();
    world.finishRun(`web-${h2}-1`, 'Inconclusive');
    world.settle();
    expect(world.ro.status?.pauseConditions?.map((p) => p.reason)).toEqual(['InconclusiveAnalysisRun']);
    world.editStatus({ pauseConditions: null });
    world.settle();
    expect(world.ro.status).toMatchObject({ phase: 'Healthy', stableRS: h2 });
  });

  test('a retry starts a new run (name.1): the failed one is never read again', () => {
    const world = basic([{ setWeight: 50 }, analysisStep]);
    const h2 = world.setImage('web:2');
    world.settle();
    world.finishRun(`web-${h2}-1`, 'Failed');
    world.settle();
    world.editStatus({ abort: null, abortedAt: null, currentStepIndex: 0, canary: null });
    world.settle();
    expect(world.runs.map((r) => r.name)).toEqual([`web-${h2}-1`, `web-${h2}-1.1`]);
    expect(world.ro.status?.canary?.currentStepAnalysisRunStatus?.name).toBe(`web-${h2}-1.1`);
  });

  test('a run whose recording in status was lost is found again, not started twice', () => {
    const world = basic([{ setWeight: 50 }, analysisStep]);
    const h2 = world.setImage('web:2');
    world.settle();
    // As if the status write after the create had lost a race.
    world.editStatus({ canary: null });
    world.settle();
    expect(world.runs.map((r) => r.name)).toEqual([`web-${h2}-1`]);
  });

  test('background analysis: failing aborts; promotion terminates it', () => {
    const background = { templates: [{ templateName: 'bg' }], startingStep: 1 };
    const world = basic([{ setWeight: 50 }, { pause: {} }], { analysis: background });
    const h2 = world.setImage('web:2');
    world.settle();
    const run = `web-${h2}-background`;
    expect(world.runs.map((r) => r.name)).toEqual([run]);
    world.editStatus({ pauseConditions: null });
    world.settle();
    expect(world.ro.status).toMatchObject({ phase: 'Healthy', stableRS: h2 });
    expect(world.runs[0]!.terminating).toBe(true);

    const h3 = world.setImage('web:3');
    world.settle();
    world.finishRun(`web-${h3}-background`, 'Failed');
    world.settle();
    expect(world.ro.status).toMatchObject({ phase: 'Degraded', abort: true });
    expect(world.ro.status?.message).toMatch(/background analysis .* failed/);
  });

  test('abort terminates the runs still measuring', () => {
    const world = basic([{ setWeight: 50 }, analysisStep]);
    const h2 = world.setImage('web:2');
    world.settle();
    world.editStatus({ abort: true });
    world.settle();
    expect(world.runs.find((r) => r.name === `web-${h2}-1`)?.terminating).toBe(true);
  });
});

describe('canary with nginx', () => {
  function routed(steps: unknown[], extra: Record<string, unknown> = {}): World {
    const world = new World({
      replicas: 5,
      strategy: {
        canary: {
          stableService: 'stable',
          canaryService: 'canary',
          trafficRouting: { nginx: { stableIngress: 'web' } },
          steps: steps as never,
          ...extra,
        },
      },
    });
    world.service('stable', 'canary');
    world.ingresses.web = {
      metadata: { name: 'web', namespace: 'ns' },
      spec: {
        rules: [{ host: 'web.example', http: { paths: [{ backend: { service: { name: 'stable' } } }] } }],
      },
    };
    world.settle();
    return world;
  }

  test('traffic moves only once the canary pods are available; the stable keeps all its pods', () => {
    const world = routed([{ setWeight: 20 }, { pause: {} }]);
    const h2 = world.setImage('web:2');
    world.reconcile();
    expect(world.counts()).toEqual({ [h1]: 5, [h2]: 1 });
    expect(world.canaryWeight('web')).toBe('0');
    world.ready();
    world.settle();
    expect(world.canaryWeight('web')).toBe('20');
    expect(world.ro.status?.canary?.weights?.canary.weight).toBe(20);
  });

  test('setCanaryScale holds its replicas through the pause after it', () => {
    const world = routed([{ setCanaryScale: { replicas: 3 } }, { setWeight: 20 }, { pause: {} }]);
    const h2 = world.setImage('web:2');
    world.settle();
    expect(world.ro.status).toMatchObject({ phase: 'Paused', currentStepIndex: 2 });
    expect(world.counts()).toEqual({ [h1]: 5, [h2]: 3 });
  });

  test('after promotion the old revision keeps its pods until scaleDownDelaySeconds, requeued for then', () => {
    const world = routed([{ setWeight: 20 }], { scaleDownDelaySeconds: 45 });
    const h2 = world.setImage('web:2');
    const plan = world.settle();
    // Promoted, and Healthy only once the old pods are gone.
    expect(world.ro.status).toMatchObject({ phase: 'Progressing', stableRS: h2 });
    expect(world.counts()[h1]).toBe(5);
    const deadline = Date.parse(world.rs(h1)!.metadata.annotations![SCALE_DOWN_DEADLINE]!);
    expect(deadline - world.now).toBeLessThanOrEqual(45_000);
    expect(plan.requeueAfter).toBe(deadline - world.now);
    world.advance(deadline - world.now);
    world.settle();
    expect(world.counts()[h1]).toBe(0);
    expect(world.ro.status?.phase).toBe('Healthy');
  });

  test('abort sets the canary weight to 0 before the canary pods go (abortScaleDownDelaySeconds)', () => {
    const world = routed([{ setWeight: 20 }, { pause: {} }], { abortScaleDownDelaySeconds: 10 });
    const h2 = world.setImage('web:2');
    world.settle();
    world.editStatus({ abort: true });
    const plan = world.reconcile();
    expect(world.canaryWeight('web')).toBe('0');
    expect(world.counts()[h2]).toBe(1);
    expect(plan.requeueAfter).toBe(10_000);
  });
});

describe('deadlines and long delays', () => {
  test('progressDeadlineSeconds: no progress → Degraded ProgressDeadlineExceeded; requeued for exactly then', () => {
    const world = basic([{ setWeight: 50 }, { pause: {} }], {});
    world.ro.spec.progressDeadlineSeconds = 60;
    world.setImage('web:2');
    const plan = world.reconcile(); // pods never become available
    expect(plan.requeueAfter).toBe(60_000);
    world.advance(60_000);
    world.reconcile();
    expect(world.ro.status).toMatchObject({ phase: 'Degraded', message: 'ProgressDeadlineExceeded' });
    expect(world.ro.status?.abort).toBeUndefined();
  });

  test('time spent paused does not count against the progress deadline', () => {
    const world = basic([{ setWeight: 50 }, { pause: {} }, { setWeight: 100 }], {});
    world.ro.spec.progressDeadlineSeconds = 60;
    world.setImage('web:2');
    world.settle();
    world.advance(3_600_000);
    world.editStatus({ pauseConditions: null });
    const plan = world.reconcile();
    expect(world.ro.status?.phase).toBe('Progressing');
    expect(plan.requeueAfter).toBe(60_000);
  });

  test('progressDeadlineAbort aborts back to stable', () => {
    const world = basic([{ setWeight: 50 }, { pause: {} }], {});
    world.ro.spec.progressDeadlineSeconds = 60;
    world.ro.spec.progressDeadlineAbort = true;
    const h2 = world.setImage('web:2');
    world.reconcile();
    world.advance(60_000);
    world.reconcile();
    world.reconcile();
    expect(world.ro.status).toMatchObject({ phase: 'Degraded', abort: true });
    expect(world.counts()).toEqual({ [h1]: 4, [h2]: 0 });
  });

  test.each([
    ['a 720h pause', { steps: [{ setWeight: 50 }, { pause: { duration: '720h' } }] }, {}],
    [
      'progressDeadlineSeconds: 2147483647',
      { steps: [{ setWeight: 50 }, { pause: {} }] },
      { progressDeadlineSeconds: 2147483647 },
    ],
  ])('%s is requeued within what a Node timer can hold, never as a 1 ms hot loop', (_name, canary, spec) => {
    const world = new World({ ...spec, strategy: { canary: canary } });
    world.settle();
    world.setImage('web:2');
    const plans = [world.reconcile()];
    world.ready();
    plans.push(world.reconcile(), world.reconcile());
    const waits = plans.map((p) => p.requeueAfter).filter((w): w is number => w !== undefined);
    expect(waits.length).toBeGreaterThan(0);
    for (const wait of waits) {
      expect(wait).toBeLessThanOrEqual(MAX_REQUEUE_MS);
      expect(wait).toBeGreaterThan(1_000);
    }
  });
});
