import { describe, expect, test } from '@jest/globals';
import {
  canaryCounts,
  pauseDurationMs,
  podTemplateHash,
  resolveIntOrPercent,
  validateSteps,
  weightAt,
} from '../../src/controller/rollout/replicas.ts';

describe('canary replica counts', () => {
  test("without a router the weight is a share of pods, rounded to the nearest pod (Argo's 41% of 10 → 4 + 6)", () => {
    expect(canaryCounts(10, 41, false)).toEqual({ canary: 4, stable: 6 });
    expect(canaryCounts(4, 25, false)).toEqual({ canary: 1, stable: 3 });
    expect(canaryCounts(3, 50, false)).toEqual({ canary: 2, stable: 1 });
    expect(canaryCounts(5, 0, false)).toEqual({ canary: 0, stable: 5 });
    expect(canaryCounts(5, 100, false)).toEqual({ canary: 5, stable: 0 });
  });
  test('with a router the stable stays full and the canary gets ceil(weight × replicas)', () => {
    expect(canaryCounts(5, 20, true)).toEqual({ canary: 1, stable: 5 });
    expect(canaryCounts(5, 21, true)).toEqual({ canary: 2, stable: 5 });
  });
  test('the weight in force is the last setWeight at or before the step', () => {
    const steps = [{ setWeight: 10 }, { pause: {} }, { setWeight: 50 }, { pause: { duration: 10 } }];
    expect([0, 1, 2, 3, 4].map((i) => weightAt(steps, i))).toEqual([10, 10, 50, 50, 50]);
    expect(weightAt([{ pause: {} }], 0)).toBe(0);
  });
});

describe('durations and int-or-percent', () => {
  test.each([
    [10, 10_000],
    ['10', 10_000],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
  ])('pause %s', (d, ms) => expect(pauseDurationMs(d)).toBe(ms));
  test('an indefinite pause has no duration; nonsense is refused', () => {
    expect(pauseDurationMs(undefined)).toBeUndefined();
    expect(() => pauseDurationMs('soon')).toThrow(/invalid pause duration/);
  });
  test('maxSurge rounds up, maxUnavailable down', () => {
    expect(resolveIntOrPercent('25%', 10, true, 0)).toBe(3);
    expect(resolveIntOrPercent('25%', 10, false, 0)).toBe(2);
    expect(resolveIntOrPercent(undefined, 10, true, '25%')).toBe(3);
    expect(resolveIntOrPercent(2, 10, true, 0)).toBe(2);
  });
});

describe('pod template hash', () => {
  const t = {
    metadata: { labels: { app: 'web', tier: 'front' } },
    spec: { containers: [{ name: 'main', image: 'web:1' }] },
  };
  test('stable across key order and the hash label itself; different for a different template', () => {
    const reordered = {
      spec: { containers: [{ image: 'web:1', name: 'main' }] },
      metadata: { labels: { tier: 'front', app: 'web' } },
    };
    const labelled = {
      ...t,
      metadata: { labels: { ...t.metadata.labels, 'rollouts-pod-template-hash': 'xyz' } },
    };
    expect(podTemplateHash(reordered)).toBe(podTemplateHash(t));
    expect(podTemplateHash(labelled)).toBe(podTemplateHash(t));
    expect(podTemplateHash({ ...t, spec: { containers: [{ name: 'main', image: 'web:2' }] } })).not.toBe(
      podTemplateHash(t),
    );
    expect(podTemplateHash(t)).toMatch(/^[bcdfghjklmnpqrstvwxz2456789]{10}$/);
  });
});

describe('step validation', () => {
  test('each problem is named with its step', () => {
    expect(
      validateSteps(
        [{ setWeight: 20, pause: {} }, { setCanaryScale: { replicas: 1 } }, { pause: { duration: 'x' } }],
        false,
      ),
    ).toEqual([
      'steps[0] must set exactly one of setWeight, pause, setCanaryScale, analysis (has: setWeight, pause)',
      'steps[1].setCanaryScale needs trafficRouting',
      'steps[2].pause: invalid pause duration "x": use seconds or 30s, 5m, 1h',
    ]);
    expect(
      validateSteps(
        [{ setWeight: 20 }, { pause: {} }, { analysis: { templates: [{ templateName: 't' }] } }],
        false,
      ),
    ).toEqual([]);
  });
});
