// The blue/green decision, transition by transition, on a model cluster and a fake clock.
import { describe, expect, test } from '@jest/globals';
import { SCALE_DOWN_DEADLINE } from '../../../../src/controller/rollout/types.ts';
import { hashOf, World } from './world.ts';

const h1 = hashOf('web:1');

function blueGreen(extra: Record<string, unknown> = {}): World {
  const world = new World({
    replicas: 3,
    strategy: { blueGreen: { activeService: 'active', previewService: 'preview', ...extra } },
  });
  world.service('active', 'preview');
  world.settle();
  return world;
}

describe('blue/green', () => {
  test('the first revision is active and previewed at once', () => {
    const world = blueGreen();
    expect(world.ro.status).toMatchObject({ phase: 'Healthy', stableRS: h1 });
    expect([world.selector('active'), world.selector('preview')]).toEqual([h1, h1]);
  });

  test('preview first, a manual promotion switches only once the new pods are all available', () => {
    const world = blueGreen({ autoPromotionEnabled: false, scaleDownDelaySeconds: 20 });
    const h2 = world.setImage('web:2');
    world.reconcile();
    expect(world.counts()).toEqual({ [h1]: 3, [h2]: 3 });
    expect([world.selector('active'), world.selector('preview')]).toEqual([h1, h2]);
    world.settle();
    expect(world.ro.status?.pauseConditions?.map((p) => p.reason)).toEqual(['BlueGreenPause']);
    expect(world.selector('active')).toBe(h1);
    // Steps are the canary's: no step index here, as Argo leaves it unset.
    expect(world.ro.status?.currentStepIndex).toBeUndefined();
    world.editStatus({ pauseConditions: null });
    const plan = world.reconcile();
    expect(world.selector('active')).toBe(h2);
    expect(world.ro.status?.stableRS).toBe(h2);
    // The old revision keeps its pods for scaleDownDelaySeconds, and is looked at again then.
    expect(world.counts()[h1]).toBe(3);
    const deadline = Date.parse(world.rs(h1)!.metadata.annotations![SCALE_DOWN_DEADLINE]!);
    expect(deadline - world.now).toBe(20_000);
    expect(plan.requeueAfter).toBe(20_000);
    world.advance(20_000);
    world.settle();
    expect(world.counts()).toEqual({ [h1]: 0, [h2]: 3 });
    expect(world.ro.status?.phase).toBe('Healthy');
  });

  test('autoPromotionSeconds: the pause ends on time, by a requeue for exactly then', () => {
    const world = blueGreen({ autoPromotionSeconds: 15 });
    const h2 = world.setImage('web:2');
    const plan = world.settle();
    expect(world.ro.status?.pauseConditions?.map((p) => p.reason)).toEqual(['BlueGreenPause']);
    // Every look while held asks to come back when the pause ends.
    expect(plan.requeueAfter).toBe(15_000);
    world.advance(14_999);
    world.reconcile();
    expect(world.selector('active')).toBe(h1);
    world.advance(1);
    world.reconcile();
    expect(world.selector('active')).toBe(h2);
  });

  test('previewReplicaCount: the preview runs small, and is scaled up before the switch', () => {
    const world = blueGreen({ previewReplicaCount: 1, autoPromotionEnabled: false });
    const h2 = world.setImage('web:2');
    world.settle();
    expect(world.counts()[h2]).toBe(1);
    world.editStatus({ pauseConditions: null });
    world.reconcile();
    expect(world.counts()[h2]).toBe(3);
    expect(world.selector('active')).toBe(h1); // not before the three are up
    world.ready();
    world.reconcile();
    expect(world.selector('active')).toBe(h2);
  });

  test('pre-promotion analysis: Failed aborts and the active Service never moves', () => {
    const world = blueGreen({ prePromotionAnalysis: { templates: [{ templateName: 'smoke' }] } });
    const h2 = world.setImage('web:2');
    world.settle();
    expect(world.runs.map((r) => r.name)).toEqual([`web-${h2}-pre`]);
    world.finishRun(`web-${h2}-pre`, 'Failed');
    world.settle();
    expect(world.ro.status).toMatchObject({ phase: 'Degraded', abort: true, stableRS: h1 });
    expect(world.selector('active')).toBe(h1);
  });

  test('post-promotion analysis: Failed switches the active Service back and aborts', () => {
    const world = blueGreen({
      postPromotionAnalysis: { templates: [{ templateName: 'errors' }] },
      abortScaleDownDelaySeconds: 0,
    });
    const h2 = world.setImage('web:2');
    world.settle();
    expect(world.selector('active')).toBe(h2);
    expect(world.ro.status?.stableRS).toBe(h1);
    world.finishRun(`web-${h2}-post`, 'Failed');
    world.settle();
    expect(world.selector('active')).toBe(h1);
    expect(world.ro.status).toMatchObject({ phase: 'Degraded', stableRS: h1 });
    // abortScaleDownDelaySeconds: 0 keeps the aborted pods for inspection.
    expect(world.counts()).toEqual({ [h1]: 3, [h2]: 3 });
  });

  test('promote --full skips analysis and the pause', () => {
    const world = blueGreen({
      autoPromotionEnabled: false,
      prePromotionAnalysis: { templates: [{ templateName: 'smoke' }] },
    });
    const h2 = world.setImage('web:2');
    world.settle();
    world.editStatus({ promoteFull: true });
    world.settle();
    expect(world.selector('active')).toBe(h2);
    expect(world.ro.status?.stableRS).toBe(h2);
  });

  test('a third revision before the switch: the overtaken preview goes at once', () => {
    const world = blueGreen({ autoPromotionEnabled: false });
    const h2 = world.setImage('web:2');
    world.settle();
    const h3 = world.setImage('web:3');
    world.reconcile();
    expect(world.counts()).toEqual({ [h1]: 3, [h2]: 0, [h3]: 3 });
    expect(world.selector('preview')).toBe(h3);
  });

  test('a third revision after the switch (post-promotion analysis running): the active one drains first', () => {
    const world = blueGreen({
      postPromotionAnalysis: { templates: [{ templateName: 'errors' }] },
      scaleDownDelaySeconds: 30,
    });
    const h2 = world.setImage('web:2');
    world.settle();
    expect(world.selector('active')).toBe(h2);
    const h3 = world.setImage('web:3');
    world.reconcile();
    // Back to the stable revision at once; the switched-to one keeps its pods for the delay.
    expect(world.selector('active')).toBe(h1);
    expect(world.counts()[h2]).toBe(3);
    expect(world.rs(h2)!.metadata.annotations?.[SCALE_DOWN_DEADLINE]).toBeDefined();
    expect(world.counts()[h3]).toBe(3);
  });

  test('abort after the pause: the active Service stays on stable; the preview goes after abortScaleDownDelaySeconds', () => {
    const world = blueGreen({ autoPromotionEnabled: false, abortScaleDownDelaySeconds: 5 });
    const h2 = world.setImage('web:2');
    world.settle();
    world.editStatus({ abort: true });
    const plan = world.reconcile();
    expect(plan.requeueAfter).toBe(5_000);
    world.advance(5_000);
    world.settle();
    expect(world.counts()).toEqual({ [h1]: 3, [h2]: 0 });
    expect(world.ro.status?.phase).toBe('Degraded');
  });
});
