// `kube-actions rollout`: rendering of get/list from fixture objects, the patches each verb sends,
// and argument errors (which exit 2 before any cluster is contacted).
import { describe, expect, test } from '@jest/globals';
import { rolloutCommand, type RolloutIO } from '../../src/cli/rollout.ts';
import {
  abortPatches,
  promotePatches,
  Refused,
  retryPatches,
  setImagePatch,
  undoTemplate,
} from '../../src/cli/rollout/patches.ts';
import { listTable, renderRollout, rolloutPhase, type Pod } from '../../src/cli/rollout/render.ts';
import type { ReplicaSet, Rollout } from '../../src/controller/rollout/types.ts';

const NOW = Date.parse('2025-01-01T12:00:00Z');
const ago = (s: number) => new Date(NOW - s * 1000).toISOString();

function rollout(status: Rollout['status'], spec: Partial<Rollout['spec']> = {}): Rollout {
  return {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'Rollout',
    metadata: {
      name: 'web',
      namespace: 'shop',
      uid: 'uid-web',
      generation: 2,
      creationTimestamp: ago(600),
    } as Rollout['metadata'],
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: {
          containers: [{ name: 'main', image: 'web:2' }],
          initContainers: [{ name: 'init', image: 'busybox' }],
        },
      },
      strategy: { canary: { steps: [{ setWeight: 50 }, { pause: {} }] } },
      ...spec,
    },
    status: { observedGeneration: '2', ...status },
  };
}

const PAUSED: Rollout['status'] = {
  phase: 'Paused',
  message: 'CanaryPauseStep',
  stableRS: 'h1',
  currentPodHash: 'h2',
  currentStepIndex: 1,
  pauseConditions: [{ reason: 'CanaryPauseStep', startTime: ago(30) }],
  controllerPause: true,
  currentStepHash: 'CanaryPauseStep@1',
  replicas: 2,
  updatedReplicas: 1,
  readyReplicas: 2,
  availableReplicas: 2,
  canary: { weights: { canary: { weight: 50 }, stable: { weight: 50 } } },
};

function rs(hash: string, revision: number, image: string, replicas: number, createdAgo: number): ReplicaSet {
  return {
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: {
      name: `web-${hash}`,
      namespace: 'shop',
      labels: { app: 'web', 'rollouts-pod-template-hash': hash },
      annotations: { 'rollout.argoproj.io/revision': String(revision) },
      ownerReferences: [
        { apiVersion: 'kube-actions.dev/v1alpha1', kind: 'Rollout', name: 'web', uid: 'uid-web' },
      ],
      creationTimestamp: ago(createdAgo),
    },
    spec: {
      replicas,
      selector: { matchLabels: { app: 'web', 'rollouts-pod-template-hash': hash } },
      template: {
        metadata: { labels: { app: 'web', 'rollouts-pod-template-hash': hash } },
        spec: { containers: [{ name: 'main', image }], initContainers: [{ name: 'init', image: 'busybox' }] },
      },
    },
    status: { replicas, readyReplicas: replicas, availableReplicas: replicas },
  };
}

function pod(name: string, owner: string, ready: boolean, createdAgo: number): Pod {
  return {
    metadata: {
      name,
      creationTimestamp: ago(createdAgo),
      ownerReferences: [{ kind: 'ReplicaSet', name: owner }],
    },
    status: {
      phase: ready ? 'Running' : 'Pending',
      containerStatuses: [
        ready
          ? { ready: true, restartCount: 0 }
          : { ready: false, state: { waiting: { reason: 'ContainerCreating' } } },
      ],
    },
  };
}

const RSS = [rs('h1', 1, 'web:1', 1, 600), rs('h2', 2, 'web:2', 1, 40)];
const PODS = [pod('web-h1-aaaaa', 'web-h1', true, 590), pod('web-h2-bbbbb', 'web-h2', true, 35)];

function blueGreen(): { ro: Rollout; rss: ReplicaSet[]; pods: Pod[] } {
  const ro = rollout(
    {
      phase: 'Paused',
      message: 'BlueGreenPause',
      stableRS: 'h2',
      currentPodHash: 'h3',
      pauseConditions: [{ reason: 'BlueGreenPause', startTime: ago(5) }],
      blueGreen: { activeSelector: 'h2', previewSelector: 'h3' },
      replicas: 3,
      updatedReplicas: 1,
      readyReplicas: 2,
      availableReplicas: 2,
    },
    { replicas: 2, strategy: { blueGreen: { activeService: 'active', previewService: 'preview' } } },
  );
  const old = rs('h1', 1, 'web:1', 0, 900);
  old.status = { replicas: 0 };
  const stable = rs('h2', 2, 'web:2', 2, 600);
  const preview = rs('h3', 3, 'web:3', 1, 10);
  preview.status = { replicas: 1, readyReplicas: 0, availableReplicas: 0 };
  stable.metadata.annotations!['argo-rollouts.argoproj.io/scale-down-deadline'] = new Date(
    NOW + 25_000,
  ).toISOString();
  return {
    ro,
    rss: [old, preview, stable],
    pods: [
      pod('web-h3-ccccc', 'web-h3', false, 10),
      pod('web-h2-bbbbb', 'web-h2', true, 590),
      pod('web-h2-aaaaa', 'web-h2', true, 600),
    ],
  };
}

describe('rollout get renders', () => {
  test('a canary paused at its pause step: summary, steps, weights, images, and the revision tree', () => {
    expect(renderRollout(rollout(PAUSED), RSS, PODS, NOW)).toBe(
      [
        'Name:            web',
        'Namespace:       shop',
        'Status:          ॥ Paused',
        'Message:         CanaryPauseStep',
        'Strategy:        Canary',
        '  Step:          1/2',
        '  Progress:      [██████████░░░░░░░░░░] 1/2',
        '  Steps:         ✔ 0  setWeight: 50',
        '                 ॥ 1  pause (until promoted)',
        '  SetWeight:     50',
        '  ActualWeight:  50',
        'Images:          web:1 (stable)',
        '                 web:2 (canary)',
        'Replicas:',
        '  Desired:       2',
        '  Current:       2',
        '  Updated:       1',
        '  Ready:         2',
        '  Available:     2',
        '',
        'NAME                      KIND         STATUS      AGE   INFO',
        '⟳ web                     Rollout      ॥ Paused    10m',
        '├──# revision:2',
        '│  └──⧉ web-h2            ReplicaSet   ✔ Healthy   40s   canary  available:1/1',
        '│     └──□ web-h2-bbbbb   Pod          ✔ Running   35s   ready:1/1',
        '└──# revision:1',
        '   └──⧉ web-h1            ReplicaSet   ✔ Healthy   10m   stable  available:1/1',
        '      └──□ web-h1-aaaaa   Pod          ✔ Running   9m    ready:1/1',
        '',
      ].join('\n'),
    );
  });

  test('a completed canary is at 100% on one image; a ReplicaSet of another owner is left out', () => {
    const ro = rollout({
      phase: 'Healthy',
      stableRS: 'h2',
      currentPodHash: 'h2',
      currentStepIndex: 2,
      replicas: 2,
      updatedReplicas: 2,
      readyReplicas: 2,
      availableReplicas: 2,
      canary: { weights: { canary: { weight: 0 }, stable: { weight: 100 } } },
    });
    const foreign = rs('zz', 7, 'other:1', 1, 5);
    foreign.metadata.ownerReferences![0]!.uid = 'uid-other';
    const text = renderRollout(ro, [...RSS, foreign], [], NOW);
    expect(text).toContain(
      [
        'Status:          ✔ Healthy',
        'Strategy:        Canary',
        '  Step:          2/2',
        '  Progress:      [████████████████████] 2/2',
        '  Steps:         ✔ 0  setWeight: 50',
        '                 ✔ 1  pause (until promoted)',
        '  SetWeight:     100',
        '  ActualWeight:  100',
        'Images:          web:2 (stable)',
        'Replicas:',
      ].join('\n'),
    );
    expect(text).not.toContain('Message:');
    expect(text).not.toContain('zz');
  });

  test('blue/green: active and preview markers, a pending pod, a scaled-down revision, a scale-down delay', () => {
    const { ro, rss, pods } = blueGreen();
    const text = renderRollout(ro, rss, pods, NOW);
    expect(text).toContain(
      [
        'Strategy:        BlueGreen',
        'Images:          web:2 (stable, active)',
        '                 web:3 (preview)',
        'Replicas:',
        '  Desired:       2',
        '  Current:       3',
      ].join('\n'),
    );
    expect(text).not.toContain('Step');
    expect(text.slice(text.indexOf('NAME'))).toBe(
      [
        'NAME                      KIND         STATUS                AGE   INFO',
        '⟳ web                     Rollout      ॥ Paused              10m',
        '├──# revision:3',
        '│  └──⧉ web-h3            ReplicaSet   ◌ Progressing         10s   preview  available:0/1',
        '│     └──□ web-h3-ccccc   Pod          ◌ ContainerCreating   10s   ready:0/1',
        '├──# revision:2',
        '│  └──⧉ web-h2            ReplicaSet   ✔ Healthy             10m   stable,active  available:2/2  delay:25s',
        '│     ├──□ web-h2-aaaaa   Pod          ✔ Running             10m   ready:1/1',
        '│     └──□ web-h2-bbbbb   Pod          ✔ Running             9m    ready:1/1',
        '└──# revision:1',
        '   └──⧉ web-h1            ReplicaSet   • ScaledDown          15m',
        '',
      ].join('\n'),
    );
  });

  test('list: one row per rollout with its step and weight', () => {
    const { ro: bg } = blueGreen();
    bg.metadata.name = 'shop';
    expect(listTable([rollout(PAUSED), bg], false, NOW)).toBe(
      [
        'NAME   STRATEGY    STATUS   STEP   SET-WEIGHT   READY   AGE',
        'web    Canary      Paused   1/2    50           2/2     10m',
        'shop   BlueGreen   Paused   -      -            2/2     10m',
        '',
      ].join('\n'),
    );
    expect(listTable([], true, NOW)).toBe('No rollouts found.\n');
  });
});

describe('the phase a user sees', () => {
  test("the controller's phase, unless a request is not picked up yet", () => {
    expect(rolloutPhase(rollout(PAUSED))).toEqual({ phase: 'Paused', message: 'CanaryPauseStep' });
    // A spec change the controller has not observed.
    expect(rolloutPhase(rollout({ ...PAUSED, observedGeneration: '1' })).phase).toBe('Progressing');
    expect(rolloutPhase({ ...rollout(PAUSED), status: undefined }).phase).toBe('Progressing');
    // Promoted: the pause conditions are gone, the phase not yet rewritten.
    expect(rolloutPhase(rollout({ ...PAUSED, pauseConditions: undefined }))).toEqual({
      phase: 'Progressing',
      message: 'waiting for the rollout to resume',
    });
    // spec.paused keeps it Paused without pause conditions.
    expect(rolloutPhase(rollout({ ...PAUSED, pauseConditions: undefined }, { paused: true })).phase).toBe(
      'Paused',
    );
    // An abort is Degraded at once; a retried abort is Progressing until the controller acts.
    expect(rolloutPhase(rollout({ ...PAUSED, abort: true }))).toEqual({
      phase: 'Degraded',
      message: 'RolloutAborted',
    });
    expect(
      rolloutPhase(
        rollout({
          ...PAUSED,
          phase: 'Degraded',
          message: 'RolloutAborted: Rollout aborted update to revision 2',
        }),
      ).phase,
    ).toBe('Progressing');
    expect(
      rolloutPhase(rollout({ ...PAUSED, phase: 'Degraded', message: 'ProgressDeadlineExceeded' })).phase,
    ).toBe('Degraded');
  });
});

describe('what the verbs write', () => {
  test('set image: guarded replaces of the named containers and init containers', () => {
    const ro = rollout(PAUSED);
    expect(setImagePatch(ro, [{ container: 'main', image: 'web:3' }])).toEqual([
      { op: 'test', path: '/spec/template/spec/containers/0/name', value: 'main' },
      { op: 'replace', path: '/spec/template/spec/containers/0/image', value: 'web:3' },
    ]);
    expect(setImagePatch(ro, [{ container: 'init', image: 'busybox:2' }])).toEqual([
      { op: 'test', path: '/spec/template/spec/initContainers/0/name', value: 'init' },
      { op: 'replace', path: '/spec/template/spec/initContainers/0/image', value: 'busybox:2' },
    ]);
    expect(
      setImagePatch(ro, [{ container: '*', image: 'x:1' }]).filter((o) => o.op === 'replace'),
    ).toHaveLength(2);
    expect(() => setImagePatch(ro, [{ container: 'sidecar', image: 'x' }])).toThrow(
      new Refused('rollout "web" has no container "sidecar" (containers: main, init)'),
    );
  });

  test('promote: ends the pause; --full skips the steps; refused when there is nothing to promote', () => {
    expect(promotePatches(rollout(PAUSED), false)).toEqual({
      status: { status: { pauseConditions: null } },
      message: 'rollout "web" promoted',
    });
    expect(
      promotePatches(rollout({ ...PAUSED, pauseConditions: undefined }, { paused: true }), false),
    ).toEqual({
      spec: { spec: { paused: false } },
      message: 'rollout "web" promoted',
    });
    expect(promotePatches(rollout(PAUSED), true)).toEqual({
      status: { status: { pauseConditions: null, promoteFull: true } },
      message: 'rollout "web" fully promoted',
    });
    const progressing = rollout({ ...PAUSED, phase: 'Progressing', pauseConditions: undefined });
    expect(() => promotePatches(progressing, false)).toThrow(
      'rollout "web" is not paused (use --full to skip the remaining steps)',
    );
    expect(promotePatches(progressing, true).status).toEqual({ status: { promoteFull: true } });
    expect(() => promotePatches(rollout({ ...PAUSED, abort: true }), false)).toThrow(
      /is aborted: use .*retry web/,
    );
    const healthy = rollout({ phase: 'Healthy', stableRS: 'h2', currentPodHash: 'h2' });
    expect(() => promotePatches(healthy, false)).toThrow('rollout "web" is not paused');
    expect(promotePatches(healthy, true)).toEqual({ message: 'rollout "web" is already fully promoted' });
  });

  test('abort and retry', () => {
    const at = new Date(NOW);
    expect(abortPatches(rollout(PAUSED), RSS, at)).toEqual({
      status: {
        status: {
          abort: true,
          abortedAt: at.toISOString(),
          message: 'RolloutAborted: Rollout aborted update to revision 2',
          pauseConditions: null,
          controllerPause: null,
          currentStepHash: null,
        },
      },
      message: 'rollout "web" aborted',
    });
    const healthy = rollout({ phase: 'Healthy', stableRS: 'h2', currentPodHash: 'h2' });
    expect(() => abortPatches(healthy, RSS, at)).toThrow('rollout "web" has no update in progress to abort');
    expect(() => retryPatches(rollout(PAUSED))).toThrow('rollout "web" is not aborted: nothing to retry');
    expect(retryPatches(rollout({ ...PAUSED, abort: true })).status).toEqual({
      status: {
        abort: null,
        abortedAt: null,
        message: null,
        currentStepIndex: 0,
        pauseConditions: null,
        controllerPause: null,
        currentStepHash: null,
      },
    });
  });

  test('undo: the template of the previous (or a given) revision without the hash label', () => {
    const ro = rollout(PAUSED);
    const back = undoTemplate(ro, RSS);
    expect(back.revision).toBe(1);
    expect(back.isCurrent).toBe(false);
    expect(back.template).toEqual({
      metadata: { labels: { app: 'web' } },
      spec: {
        containers: [{ name: 'main', image: 'web:1' }],
        initContainers: [{ name: 'init', image: 'busybox' }],
      },
    });
    expect(RSS[0]!.spec.template.metadata!.labels!['rollouts-pod-template-hash']).toBe('h1');
    expect(undoTemplate(ro, RSS, 2).isCurrent).toBe(true);
    expect(() => undoTemplate(ro, RSS, 5)).toThrow('rollout "web" has no revision 5 (revisions: 1, 2)');
    expect(() => undoTemplate(ro, [RSS[1]!])).toThrow('rollout "web" has no previous revision to go back to');
  });
});

describe('rollout arguments', () => {
  async function run(...args: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const io: RolloutIO = { out: (t) => out.push(t), err: (t) => err.push(t), isTTY: false };
    // No cluster is reachable: each of these must be refused before one is needed.
    const code = await rolloutCommand(args, io);
    return { code, out: out.join(''), err: err.join('') };
  }

  test.each([
    [[], 'usage: kube-actions rollout'],
    [['frob', 'web'], 'unknown command "frob"'],
    [['get'], 'get needs a rollout name'],
    [['promote', 'web', 'extra'], 'unexpected arguments: extra'],
    [['get', 'web', '-o', 'xml'], '--output must be json or yaml'],
    [['status', 'web', '-o', 'json'], '--output applies to get and list'],
    [['status', 'web', '--timeout', 'soon'], '--timeout must be a duration'],
    [['undo', 'web', '--to-revision', 'two'], '--to-revision must be a revision number'],
    [['abort', 'web', '--full'], '--full applies to promote'],
    [['set', 'image', 'web'], 'set image needs CONTAINER=IMAGE'],
    [['set', 'image', 'web', 'main'], '"main" is not CONTAINER=IMAGE'],
    [['set', 'env', 'web', 'A=B'], 'set supports only "set image"'],
    [['get', 'web', '--bogus'], "Unknown option '--bogus'"],
    [['status', 'web', '--watch=maybe'], "Option '-w, --watch' does not take an argument"],
  ])('%j is a usage error (exit 2)', async (args, message) => {
    const r = await run(...args);
    expect(r.code).toBe(2);
    expect(r.err).toContain(message);
    expect(r.out).toBe('');
  });

  test('--help prints usage on stdout and exits 0', async () => {
    const r = await run('--help');
    expect(r.code).toBe(0);
    expect(r.out).toContain('set image NAME CONTAINER=IMAGE');
  });
});
