// Pure arithmetic of a rollout: the pod-template hash that names a revision, and how many pods
// each ReplicaSet gets for a canary weight, with or without a traffic router (Argo Rollouts'
// semantics: without a router the weight is the share of pods, rounded to the nearest pod).
import { createHash } from 'node:crypto';
import { sortKeys } from '../../core/json.ts';
import type { CanaryStep, IntOrString, PodTemplate } from './types.ts';

// Kubernetes' rand.SafeEncodeString alphabet: no vowels (no words), no look-alikes.
const ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

/**
 * The hash of a pod template: equal templates give equal hashes whatever their key order, and the
 * hash label itself (which the controller adds) does not count.
 */
export function podTemplateHash(template: PodTemplate, collisionCount = 0): string {
  const labels = { ...template.metadata?.labels };
  delete labels['rollouts-pod-template-hash'];
  const normalized = sortKeys({ ...template, metadata: { ...template.metadata, labels } });
  const digest = createHash('sha256')
    .update(JSON.stringify(normalized))
    .update(String(collisionCount))
    .digest();
  let out = '';
  for (let i = 0; i < 10; i++) out += ALPHABET[digest[i]! % ALPHABET.length];
  return out;
}

/** A percentage or absolute IntOrString against a total (maxSurge rounds up, maxUnavailable down). */
export function resolveIntOrPercent(
  value: IntOrString | undefined,
  total: number,
  roundUp: boolean,
  fallback: IntOrString,
): number {
  const v = value ?? fallback;
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  const text = typeof v === 'string' ? v.trim() : '';
  const m = /^(\d+)%$/.exec(text);
  if (!m) {
    if (/^-?\d+$/.test(text)) return Number(text);
    throw new Error(`invalid value ${JSON.stringify(v)}: expected an integer or a percentage`);
  }
  const exact = (Number(m[1]) * total) / 100;
  return roundUp ? Math.ceil(exact) : Math.floor(exact);
}

export interface CanaryCounts {
  canary: number;
  stable: number;
}

/**
 * Pods for a canary weight. Without a router the weight is the share of pods (canary + stable =
 * replicas, rounded to the nearest pod); with a router the stable stays full and the canary gets
 * ceil(weight × replicas), traffic being split by the router.
 */
export function canaryCounts(replicas: number, weight: number, hasRouter: boolean): CanaryCounts {
  const w = Math.min(100, Math.max(0, weight));
  if (hasRouter) return { canary: Math.ceil((replicas * w) / 100), stable: replicas };
  const canary = Math.round((replicas * w) / 100);
  return { canary, stable: replicas - canary };
}

/** The weight in force at step `index`: the last setWeight at or before it (0 before any). */
export function weightAt(steps: CanaryStep[], index: number): number {
  let weight = 0;
  for (let i = 0; i < Math.min(index + 1, steps.length); i++) {
    if (steps[i]!.setWeight !== undefined) weight = steps[i]!.setWeight!;
  }
  return weight;
}

/**
 * The setCanaryScale in force at step `index` (Argo's UseSetCanaryScale): the last one at or
 * before it, unless that one says matchTrafficWeight (back to pods following the weight).
 */
export function canaryScaleAt(steps: CanaryStep[], index: number): CanaryStep['setCanaryScale'] | undefined {
  let scale: CanaryStep['setCanaryScale'] | undefined;
  for (let i = 0; i < Math.min(index + 1, steps.length); i++) {
    if (steps[i]!.setCanaryScale !== undefined) scale = steps[i]!.setCanaryScale;
  }
  return scale?.matchTrafficWeight ? undefined : scale;
}

/** Argo's pause durations: a number of seconds, or "30s", "5m", "1h". */
export function pauseDurationMs(duration: IntOrString | undefined): number | undefined {
  // null as written in YAML (`duration: ~`): no duration, as absent.
  if (duration === undefined || (duration as unknown) === null) return undefined;
  const invalid = () => new Error(`invalid pause duration "${duration}": use seconds or 30s, 5m, 1h`);
  // A negative or fractional number would be a pause that ends at once, or in a unit nobody meant.
  if (typeof duration === 'number') {
    if (!Number.isSafeInteger(duration) || duration < 0) throw invalid();
    return duration * 1000;
  }
  if (typeof duration !== 'string') throw invalid();
  const m = /^(\d+)(s|m|h)?$/.exec(duration.trim());
  if (!m) throw invalid();
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 's' | 'm' | 'h'];
}

/** Problems with canary steps, for the InvalidSpec condition. */
export function validateSteps(steps: CanaryStep[], hasRouter: boolean): string[] {
  const problems: string[] = [];
  steps.forEach((step, i) => {
    if (typeof step !== 'object' || step === null || Array.isArray(step)) {
      problems.push(`steps[${i}] must be an object such as {setWeight: 20} or {pause: {}}`);
      return;
    }
    const kinds = Object.keys(step).filter((k) => (step as Record<string, unknown>)[k] !== undefined);
    // A misspelt step (setWeigth) would otherwise be a step that does nothing.
    const unknown = kinds.filter((k) => !STEP_FIELDS.has(k));
    if (unknown.length) problems.push(`steps[${i}] has unknown field ${unknown.join(', ')}`);
    if (kinds.length !== 1)
      problems.push(
        `steps[${i}] must set exactly one of setWeight, pause, setCanaryScale, analysis (has: ${kinds.join(', ') || 'none'})`,
      );
    if (
      step.setWeight !== undefined &&
      (!Number.isInteger(step.setWeight) || step.setWeight < 0 || step.setWeight > 100)
    ) {
      problems.push(`steps[${i}].setWeight must be an integer from 0 to 100`);
    }
    if (step.pause !== undefined && (typeof step.pause !== 'object' || step.pause === null)) {
      problems.push(`steps[${i}].pause must be an object such as {} or {duration: 30s}`);
    } else if (step.pause) {
      try {
        pauseDurationMs(step.pause.duration);
      } catch (err) {
        problems.push(`steps[${i}].pause: ${(err as Error).message}`);
      }
    }
    const scale = step.setCanaryScale;
    if (scale && (!isCountOrUndefined(scale.replicas) || !isPercentOrUndefined(scale.weight)))
      problems.push(`steps[${i}].setCanaryScale: replicas must be a non-negative integer, weight 0-100`);
    if (step.setCanaryScale && !hasRouter) problems.push(`steps[${i}].setCanaryScale needs trafficRouting`);
    for (const unsupported of ['experiment', 'setHeaderRoute', 'setMirrorRoute', 'plugin'] as const) {
      if (step[unsupported] !== undefined) problems.push(`steps[${i}].${unsupported} is not supported`);
    }
  });
  return problems;
}

const isCountOrUndefined = (n: unknown) => n === undefined || (Number.isInteger(n) && (n as number) >= 0);
const isPercentOrUndefined = (n: unknown) =>
  isCountOrUndefined(n) && (n === undefined || (n as number) <= 100);

const STEP_FIELDS = new Set([
  'setWeight',
  'pause',
  'setCanaryScale',
  'analysis',
  'experiment',
  'setHeaderRoute',
  'setMirrorRoute',
  'plugin',
]);
