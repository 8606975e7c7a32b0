// The sync policy (src/controller/sync/policy.ts) against Argo CD's autoSync semantics, with a
// fake clock: every decision is a function of the Application, the comparison and `now`, so each
// case states the time and the status it decides from.
import { describe, expect, test } from '@jest/globals';
import {
  awaitsProgress,
  backoffMs,
  decideSync,
  selfHealDelayMs,
  type ComparisonSummary,
  type SyncDecision,
} from '../../../../src/controller/sync/policy.ts';
import type { Application, OperationState, SyncPolicy } from '../../../../src/controller/sync/types.ts';

const REV = 'a'.repeat(40);
const NEXT = 'b'.repeat(40);
const SOURCE = { repoURL: 'https://git.example/app.git', targetRevision: 'main', path: 'deploy' };
const T0 = new Date('2026-01-01T00:00:00Z');
const at = (ms: number) => new Date(T0.getTime() + ms);

function app(
  policy: SyncPolicy | undefined,
  last?: Partial<OperationState>,
  extra: Partial<Application> = {},
) {
  const a: Application = {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'Application',
    metadata: { name: 'web', namespace: 'apps' },
    spec: { source: SOURCE, destination: { namespace: 'web' }, ...(policy ? { syncPolicy: policy } : {}) },
    ...extra,
  };
  if (last) {
    a.status = {
      operationState: {
        operation: { sync: { revision: REV }, initiatedBy: { automated: true } },
        phase: 'Succeeded',
        message: 'successfully synced (1 applied)',
        startedAt: T0.toISOString(),
        finishedAt: T0.toISOString(),
        syncResult: { revision: REV, resources: [], source: SOURCE },
        ...last,
      },
    };
  }
  return a;
}

const drift: ComparisonSummary = { revision: REV, outOfSync: 1, requiresPruning: 0, errors: 0, empty: false };
const inSync: ComparisonSummary = { ...drift, outOfSync: 0 };

function decide(a: Application, comparison: ComparisonSummary, now: Date = T0): SyncDecision {
  return decideSync({ app: a, comparison, now });
}

describe('automated sync', () => {
  test('off: no syncPolicy, no automated, or automated.enabled=false never syncs', () => {
    expect(decide(app(undefined), drift)).toMatchObject({ action: 'none', reason: 'automated sync is off' });
    expect(decide(app({ syncOptions: ['CreateNamespace=true'] }), drift).action).toBe('none');
    expect(decide(app({ automated: { enabled: false, selfHeal: true, prune: true } }), drift).action).toBe(
      'none',
    );
  });

  test('a revision not synced yet is synced at once, with the automated operation Argo CD writes', () => {
    expect(decide(app({ automated: { prune: true } }), drift)).toEqual({
      action: 'sync',
      operation: { sync: { revision: REV, prune: true }, initiatedBy: { automated: true } },
      retryCount: 0,
      reason: `${REV.slice(0, 12)} is not synced yet`,
    });
    // The last operation synced another revision: this one is new.
    const synced = app({ automated: {} }, { syncResult: { revision: NEXT, resources: [], source: SOURCE } });
    expect(decide(synced, drift)).toMatchObject({ action: 'sync', operation: { sync: { prune: false } } });
  });

  test('in sync: nothing to do', () => {
    expect(decide(app({ automated: { selfHeal: true } }), inSync)).toMatchObject({
      action: 'none',
      reason: 'in sync',
    });
  });

  test('the same revision, already synced, is not synced again without selfHeal', () => {
    const a = app({ automated: {} }, { phase: 'Succeeded' });
    expect(decide(a, drift, at(3_600_000))).toMatchObject({ action: 'none' });
  });

  test('a changed source with the same revision is a new attempt', () => {
    const a = app(
      { automated: {} },
      { syncResult: { revision: REV, resources: [], source: { ...SOURCE, path: 'old' } } },
    );
    expect(decide(a, drift).action).toBe('sync');
  });

  test("multiple sources: the automated operation asks for Argo CD's revisions, one per source; a changed source is a new attempt", () => {
    const VALUES = { repoURL: 'https://git.example/values.git', targetRevision: 'main', ref: 'values' };
    const CHART = {
      repoURL: 'https://charts.example',
      chart: 'web',
      targetRevision: '1.x',
      helm: { valueFiles: ['$values/prod.yaml'] },
    };
    const composite: ComparisonSummary = { ...drift, revision: `1.2.0,${REV}` };
    const multi = (sources: Application['spec']['sources'], last?: Partial<OperationState>) => {
      const a = app({ automated: {} }, last);
      a.spec = { ...a.spec, sources };
      return a;
    };
    const fresh = decide(multi([CHART, VALUES]), composite);
    expect(fresh).toMatchObject({
      action: 'sync',
      operation: { sync: { revisions: ['1.2.0', REV], prune: false } },
    });
    expect(fresh.action === 'sync' && fresh.operation.sync?.revision).toBeUndefined();
    const tried = { syncResult: { revision: `1.2.0,${REV}`, resources: [], sources: [CHART, VALUES] } };
    // The same sources at the same revisions: tried; spec.source beside them does not count.
    expect(decide(multi([CHART, VALUES], tried), composite).action).toBe('none');
    expect(decide(multi([CHART, { ...VALUES, targetRevision: 'release' }], tried), composite).action).toBe(
      'sync',
    );
    expect(decide(multi([CHART, VALUES], tried), { ...composite, revision: `1.3.0,${REV}` }).action).toBe(
      'sync',
    );
  });

  test('a dry run of the revision tried nothing: the revision is still synced', () => {
    const a = app(
      { automated: {} },
      { operation: { sync: { revision: REV, dryRun: true }, initiatedBy: { username: 'alice' } } },
    );
    expect(decide(a, drift).action).toBe('sync');
  });

  test('only pruning to do: synced only when automated.prune is on', () => {
    const pruneOnly = { ...inSync, requiresPruning: 2 };
    expect(decide(app({ automated: {} }), pruneOnly).action).toBe('none');
    expect(decide(app({ automated: { prune: true } }), pruneOnly).action).toBe('sync');
  });

  test('allowEmpty: an empty render is refused with a SyncError unless allowed', () => {
    const empty = { ...drift, outOfSync: 0, requiresPruning: 3, empty: true };
    const refused = decide(app({ automated: { prune: true } }), empty);
    expect(refused).toMatchObject({ action: 'none' });
    expect(refused.action === 'none' && refused.error).toMatch(/rendered no objects.*allowEmpty/);
    expect(decide(app({ automated: { prune: true, allowEmpty: true } }), empty).action).toBe('sync');
  });

  test('an operation still running is left to finish, even when another one is requested', () => {
    const a = app({ automated: { selfHeal: true } }, { phase: 'Running', finishedAt: undefined });
    expect(decide(a, drift)).toMatchObject({ action: 'none', reason: 'an operation is running' });
    a.operation = { sync: { revision: NEXT }, initiatedBy: { username: 'alice' } };
    expect(decide(a, drift).action).toBe('none');
  });
});

describe('self-heal', () => {
  const policy: SyncPolicy = { automated: { selfHeal: true } };
  const healed = (attempts: number | undefined, finishedAt = T0) =>
    app(policy, {
      operation: {
        sync: { revision: REV, ...(attempts !== undefined ? { autoHealAttemptsCount: attempts } : {}) },
        initiatedBy: { automated: true },
      },
      finishedAt: finishedAt.toISOString(),
    });

  test('the first heal after a sync is immediate, and counts itself in the operation it starts', () => {
    const d = decide(healed(undefined), drift, at(100));
    expect(d).toMatchObject({
      action: 'sync',
      operation: { sync: { revision: REV, autoHealAttemptsCount: 1 } },
    });
  });

  test("later heals of the same revision back off from the last sync's end: 2s, 6s, 18s … 5m (Argo CD's defaults)", () => {
    expect(decide(healed(1), drift, at(1999))).toEqual({
      action: 'wait',
      at: at(2000),
      reason: `self-heal attempt 2 of ${REV.slice(0, 12)} backs off`,
    });
    expect(decide(healed(1), drift, at(2000))).toMatchObject({
      action: 'sync',
      operation: { sync: { autoHealAttemptsCount: 2 } },
    });
    expect(decide(healed(2), drift, at(5000))).toMatchObject({ action: 'wait', at: at(6000) });
    expect(decide(healed(3), drift, at(5000))).toMatchObject({ action: 'wait', at: at(18_000) });
    expect(decide(healed(30), drift, at(5000))).toMatchObject({ action: 'wait', at: at(300_000) });
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((n) => selfHealDelayMs(n))).toEqual([
      0, 2000, 6000, 18_000, 54_000, 162_000, 300_000, 300_000,
    ]);
  });

  test('the count lives in the status: it starts over with a new revision', () => {
    // The status says 5 heals of REV; NEXT is new, so its automated operation carries no count.
    const d = decide(healed(5), { ...drift, revision: NEXT }, at(10));
    expect(d).toMatchObject({ action: 'sync', operation: { sync: { revision: NEXT } } });
    expect(d.action === 'sync' && d.operation.sync?.autoHealAttemptsCount).toBeUndefined();
  });

  test('a configured backoff is used instead', () => {
    const a = healed(2);
    const d = decideSync({
      app: a,
      comparison: drift,
      now: at(1000),
      selfHealBackoff: { durationMs: 1000, factor: 2, maxMs: 10_000 },
    });
    expect(d).toMatchObject({ action: 'wait', at: at(2000) });
  });
});

describe('retry after a failed sync', () => {
  const failed = (policy: SyncPolicy, retryCount?: number) =>
    app(policy, {
      phase: 'Failed',
      message: 'Sync deployment/web: Degraded',
      ...(retryCount !== undefined ? { retryCount } : {}),
    });

  test('without syncPolicy.retry a failed revision is not retried, and the reason is a SyncError', () => {
    const d = decide(failed({ automated: { selfHeal: true } }), drift, at(3_600_000));
    expect(d).toMatchObject({ action: 'none' });
    expect(d.action === 'none' && d.error).toBe(
      `the last sync of ${REV.slice(0, 12)} failed; not retrying: Sync deployment/web: Degraded`,
    );
  });

  test('retried with backoff (duration × factor^retries, capped at maxDuration) up to the limit', () => {
    const policy: SyncPolicy = {
      automated: {},
      retry: { limit: 3, backoff: { duration: '5s', factor: 2, maxDuration: '15s' } },
    };
    expect(decide(failed(policy), drift, at(4999))).toMatchObject({ action: 'wait', at: at(5000) });
    expect(decide(failed(policy), drift, at(5000))).toMatchObject({
      action: 'sync',
      retryCount: 1,
      operation: { retry: policy.retry },
    });
    expect(decide(failed(policy, 1), drift, at(1000))).toMatchObject({ action: 'wait', at: at(10_000) });
    expect(decide(failed(policy, 2), drift, at(1000))).toMatchObject({ action: 'wait', at: at(15_000) });
    expect(decide(failed(policy, 2), drift, at(15_000))).toMatchObject({ action: 'sync', retryCount: 3 });
    expect(decide(failed(policy, 3), drift, at(3_600_000))).toMatchObject({ action: 'none' });
  });

  test('a negative limit retries for ever; a new revision is a new attempt whatever the count', () => {
    const policy: SyncPolicy = { automated: {}, retry: { limit: -1 } };
    expect(decide(failed(policy, 50), drift, at(3_600_000))).toMatchObject({
      action: 'sync',
      retryCount: 51,
    });
    const limited: SyncPolicy = { automated: {}, retry: { limit: 1 } };
    expect(decide(failed(limited, 1), { ...drift, revision: NEXT })).toMatchObject({
      action: 'sync',
      retryCount: 0,
    });
  });

  test("Argo CD's retry defaults: 5s, factor 2, at most 3m; a duration without unit is in seconds", () => {
    expect([0, 1, 2, 10].map((n) => backoffMs(undefined, n))).toEqual([5000, 10_000, 20_000, 180_000]);
    expect(backoffMs({ duration: '30', maxDuration: '90' }, 2)).toBe(90_000);
  });
});

describe('a requested operation', () => {
  const manual = { sync: { revision: REV, prune: true }, initiatedBy: { username: 'alice' } };

  test('always wins: automation off, in sync, a failure not retried, a self-heal backing off', () => {
    const cases: Application[] = [
      app(undefined, undefined, { operation: manual }),
      app({ automated: {} }, { phase: 'Succeeded' }, { operation: manual }),
      app({ automated: {} }, { phase: 'Failed' }, { operation: manual }),
      app(
        { automated: { selfHeal: true } },
        { operation: { sync: { revision: REV, autoHealAttemptsCount: 9 } } },
        { operation: manual },
      ),
    ];
    for (const a of cases) {
      expect(decide(a, inSync)).toEqual({
        action: 'sync',
        operation: manual,
        retryCount: 0,
        reason: 'requested by alice',
      });
    }
  });
});

describe('whether to look again soon (awaitsProgress)', () => {
  const deployment = (ready: number) => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'web', generation: 1 },
    spec: { replicas: 2 },
    status: {
      observedGeneration: 1,
      replicas: 2,
      updatedReplicas: 2,
      readyReplicas: ready,
      availableReplicas: ready,
    },
  });
  const refused = { error: 'spec.replicas: Invalid value: -2147483648' };
  const missing = {};

  test('a Progressing object is looked at soon; a healthy one is not', () => {
    expect(awaitsProgress(app({}), REV, [{ live: deployment(1) }], T0)).toBe(true);
    expect(awaitsProgress(app({}), REV, [{ live: deployment(2) }], T0)).toBe(false);
  });

  test('a missing object counts only just after a sync of this revision succeeded', () => {
    const synced = app({ automated: {} }, { phase: 'Succeeded' });
    expect(awaitsProgress(synced, REV, [missing], at(5_000))).toBe(true);
    // Long after the sync, or after a sync of another revision, nothing is about to create it.
    expect(awaitsProgress(synced, REV, [missing], at(60_000))).toBe(false);
    expect(awaitsProgress(synced, NEXT, [missing], at(5_000))).toBe(false);
    // A failed sync, a manual application never synced: it stays missing until something changes.
    expect(awaitsProgress(app({ automated: {} }, { phase: 'Failed' }), REV, [missing], at(5_000))).toBe(
      false,
    );
    expect(awaitsProgress(app(undefined), REV, [missing], T0)).toBe(false);
  });

  test('an object the dry-run refused is never progressing, whatever else is true', () => {
    const synced = app({ automated: {} }, { phase: 'Succeeded' });
    expect(awaitsProgress(synced, REV, [refused], at(1_000))).toBe(false);
    expect(awaitsProgress(synced, REV, [refused, { live: deployment(2) }], at(1_000))).toBe(false);
    expect(awaitsProgress(synced, REV, [refused, { live: deployment(0) }], at(1_000))).toBe(true);
  });
});
