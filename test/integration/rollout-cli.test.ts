// `kube-actions rollout` as it ships (the bundled CLI) against the real control plane, with the
// Rollout controller running as `kube-actions controller`: set image, status as a gate, get, list,
// promote, abort, retry, undo, pause, and their refusals.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { KubeClient } from '../../src/core/kube/client.ts';
import {
  POD_TEMPLATE_HASH,
  REVISION,
  ROLLOUT,
  SERVICES,
  type ReplicaSet,
  type Rollout,
} from '../../src/controller/rollout/types.ts';
import { installCRDs } from '../cluster/crds.ts';
import { NODE24 } from '../cluster/run-action.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const ns = useTestNamespace('rollout-cli');
const CLI = resolve(import.meta.dirname, '../../dist/cli/index.js');

let client: KubeClient;
let controller: ChildProcess;
let controllerExited: Promise<number | null>;
let cacheDir: string;
const controllerLogs: string[] = [];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function rollout(...args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(NODE24, [CLI, 'rollout', ...args, '-n', ns.name], { env: process.env }, (err, stdout, stderr) =>
      done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** Runs the CLI and checks its exit code, failing with everything needed to see why. */
async function expectRollout(code: number, ...args: string[]): Promise<Run> {
  const run = await rollout(...args);
  if (run.code !== code) {
    throw new Error(
      `rollout ${args.join(' ')}: exit ${run.code}, expected ${code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}\n` +
        `status: ${JSON.stringify((await get('web').catch(() => undefined))?.status)}\n` +
        `controller (last lines):\n${controllerLogs.slice(-20).join('\n')}`,
    );
  }
  return run;
}

async function get(name: string): Promise<Rollout> {
  return client.get<Rollout>(ROLLOUT, ns.name, name);
}

async function replicaSets(): Promise<ReplicaSet[]> {
  const list = await client.request<{ items: ReplicaSet[] }>(
    'GET',
    `/apis/apps/v1/namespaces/${ns.name}/replicasets`,
  );
  return list.items;
}

const lastLine = (text: string) => text.trimEnd().split('\n').at(-1);

beforeAll(async () => {
  await installCRDs(ns.kc);
  client = new KubeClient(ns.kc);
  cacheDir = await mkdtemp(join(tmpdir(), 'rollout-cli-'));
  controller = spawn(
    NODE24,
    [
      CLI,
      'controller',
      '--leader-elect=false',
      '--namespace',
      ns.name,
      '--metrics-port',
      '0',
      '--webhook-port',
      '0',
      '--cache-dir',
      cacheDir,
    ],
    { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  for (const stream of [controller.stdout!, controller.stderr!])
    stream.on('data', (d: Buffer) => controllerLogs.push(...d.toString().split('\n').filter(Boolean)));
  controllerExited = new Promise((r) => controller.on('exit', (code) => r(code)));
  for (const name of ['web-stable', 'web-canary']) {
    await client.create(SERVICES, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: ns.name },
      spec: { selector: { app: 'web' }, ports: [{ port: 80 }] },
    } as never);
  }
  await client.create(ROLLOUT, {
    apiVersion: ROLLOUT.apiVersion,
    kind: 'Rollout',
    metadata: { name: 'web', namespace: ns.name },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: { containers: [{ name: 'main', image: 'registry.example/web:1' }] },
      },
      strategy: {
        canary: {
          stableService: 'web-stable',
          canaryService: 'web-canary',
          steps: [{ setWeight: 50 }, { pause: {} }],
        },
      },
    },
  } as never);
});

afterAll(async () => {
  controller?.kill('SIGTERM');
  await controllerExited;
  await client?.close();
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

describe('kube-actions rollout', () => {
  test('status waits for the first revision to become Healthy; get shows it', async () => {
    const status = await expectRollout(0, 'status', 'web', '--timeout', '60s');
    expect(lastLine(status.stdout)).toBe('Healthy');
    const shown = await expectRollout(0, 'get', 'web');
    expect(shown.stdout).toContain('Status:          ✔ Healthy\n');
    expect(shown.stdout).toContain('Images:          registry.example/web:1 (stable)\n');
    expect(shown.stdout).toMatch(
      /└──# revision:1\n {3}└──⧉ web-\w+ +ReplicaSet +✔ Healthy .*stable {2}available:2\/2/,
    );
    expect(shown.stdout.match(/□ web-\w+-\w+ +Pod +✔ Running/g)).toHaveLength(2);
  });

  test('set image starts a canary that pauses; status exits 0 on Paused; get and list show both revisions and the weight', async () => {
    const set = await expectRollout(0, 'set', 'image', 'web', 'main=registry.example/web:2');
    expect(set.stdout).toBe('rollout "web" image updated\n');
    expect((await get('web')).spec.template?.spec?.containers?.[0]?.image).toBe('registry.example/web:2');

    const status = await expectRollout(0, 'status', 'web', '--timeout', '60s');
    expect(lastLine(status.stdout)).toBe('Paused - CanaryPauseStep');
    const ro = await get('web');
    expect(ro.status?.currentStepIndex).toBe(1);

    const shown = await expectRollout(0, 'get', 'web');
    expect(shown.stdout).toContain(
      [
        'Status:          ॥ Paused',
        'Message:         CanaryPauseStep',
        'Strategy:        Canary',
        '  Step:          1/2',
        '  Progress:      [██████████░░░░░░░░░░] 1/2',
        '  Steps:         ✔ 0  setWeight: 50',
        '                 ॥ 1  pause (until promoted)',
        '  SetWeight:     50',
        '  ActualWeight:  50',
        'Images:          registry.example/web:1 (stable)',
        '                 registry.example/web:2 (canary)',
      ].join('\n'),
    );
    expect(shown.stdout).toMatch(
      /├──# revision:2\n│ {2}└──⧉ web-\w+ +ReplicaSet +✔ Healthy .*canary {2}available:1\/1/,
    );
    expect(shown.stdout).toMatch(
      /└──# revision:1\n {3}└──⧉ web-\w+ +ReplicaSet +✔ Healthy .*stable {2}available:1\/1/,
    );

    const json = await expectRollout(0, 'get', 'web', '-o', 'json');
    expect(JSON.parse(json.stdout)).toMatchObject({ kind: 'Rollout', status: { phase: 'Paused' } });
    const list = await expectRollout(0, 'list');
    expect(list.stdout).toMatch(
      /^NAME +STRATEGY +STATUS +STEP +SET-WEIGHT +READY +AGE\nweb +Canary +Paused +1\/2 +50 +2\/2 /,
    );

    const unknown = await expectRollout(1, 'set', 'image', 'web', 'sidecar=x:1');
    expect(unknown.stderr).toBe(
      'kube-actions rollout: rollout "web" has no container "sidecar" (containers: main)\n',
    );
    const missing = await expectRollout(1, 'get', 'nope');
    expect(missing.stderr).toContain(`rollout "nope" not found in namespace "${ns.name}"`);
  });

  test('promote: the canary becomes stable (get --watch follows it); a second promote is refused', async () => {
    const watcher = spawn(NODE24, [CLI, 'rollout', 'get', 'web', '--watch', '-n', ns.name], {
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let watched = '';
    watcher.stdout.on('data', (d: Buffer) => (watched += d.toString()));
    const watcherExit = new Promise<number | null>((r) => watcher.on('exit', (code) => r(code)));
    try {
      await eventually('the watch to draw', () => Promise.resolve(watched.includes('॥ Paused') || undefined));

      const promoted = await expectRollout(0, 'promote', 'web');
      expect(promoted.stdout).toBe('rollout "web" promoted\n');
      const status = await expectRollout(0, 'status', 'web', '--timeout', '60s');
      expect(lastLine(status.stdout)).toBe('Healthy');
      const ro = await get('web');
      expect(ro.status?.stableRS).toBe(ro.status?.currentPodHash);
      const stable = (await replicaSets()).find(
        (rs) => rs.metadata.labels?.[POD_TEMPLATE_HASH] === ro.status?.stableRS,
      );
      expect(stable?.metadata.annotations?.[REVISION]).toBe('2');

      // The watch redrew on its own, and ends on Ctrl-C with exit 0.
      await eventually('the watch to redraw Healthy', () =>
        Promise.resolve(
          watched.slice(watched.indexOf('॥ Paused')).includes('Status:          ✔ Healthy') || undefined,
        ),
      );
      watcher.kill('SIGINT');
      expect(await watcherExit).toBe(0);
    } finally {
      watcher.kill('SIGKILL');
    }

    const again = await expectRollout(1, 'promote', 'web');
    expect(again.stderr).toBe('kube-actions rollout: rollout "web" is not paused\n');
  });

  test('abort: status exits 1 with the abort message and the canary goes; retry runs the steps again', async () => {
    await expectRollout(0, 'set', 'image', 'web', 'main=registry.example/web:3');
    expect(lastLine((await expectRollout(0, 'status', 'web', '--timeout', '60s')).stdout)).toBe(
      'Paused - CanaryPauseStep',
    );
    const hash3 = (await get('web')).status!.currentPodHash!;

    expect((await expectRollout(0, 'abort', 'web')).stdout).toBe('rollout "web" aborted\n');
    const degraded = await expectRollout(1, 'status', 'web', '--timeout', '60s');
    expect(lastLine(degraded.stdout)).toBe('Degraded - RolloutAborted: Rollout aborted update to revision 3');
    expect(degraded.stderr).toBe(
      'kube-actions rollout: rollout "web" is Degraded: RolloutAborted: Rollout aborted update to revision 3\n',
    );
    // The controller acted on it: the canary is scaled away, the stable serves everything.
    await eventually('the canary to be scaled down', async () => {
      const ro = await get('web');
      const rss = await replicaSets();
      const canary = rss.find((rs) => rs.metadata.labels?.[POD_TEMPLATE_HASH] === hash3);
      const stable = rss.find((rs) => rs.metadata.labels?.[POD_TEMPLATE_HASH] === ro.status?.stableRS);
      return ro.status?.phase === 'Degraded' &&
        canary?.spec.replicas === 0 &&
        stable?.status?.availableReplicas === 2
        ? true
        : undefined;
    });
    expect((await expectRollout(1, 'promote', 'web')).stderr).toContain('is aborted: use');

    const retriedAt = Date.now() - 1000;
    expect((await expectRollout(0, 'retry', 'web')).stdout).toBe('rollout "web" restarted\n');
    expect(lastLine((await expectRollout(0, 'status', 'web', '--timeout', '60s')).stdout)).toBe(
      'Paused - CanaryPauseStep',
    );
    const ro = await get('web');
    expect(ro.status).toMatchObject({ currentPodHash: hash3, currentStepIndex: 1 });
    expect(ro.status?.abort).toBeUndefined();
    // A fresh pause, not the one from before the abort.
    expect(Date.parse(ro.status!.pauseConditions![0]!.startTime)).toBeGreaterThanOrEqual(retriedAt);
    expect((await get('web')).status?.canary?.weights?.canary.weight).toBe(50);
    expect((await expectRollout(1, 'retry', 'web')).stderr).toContain('is not aborted');
  });

  test('undo to revision 1 brings back its template, which steps through the canary; promote --full finishes it', async () => {
    const undone = await expectRollout(0, 'undo', 'web', '--to-revision', '1');
    expect(undone.stdout).toBe('rollout "web" rolled back to the template of revision 1\n');
    const template = (await get('web')).spec.template!;
    expect(template.spec?.containers?.[0]?.image).toBe('registry.example/web:1');
    expect(template.metadata?.labels).toEqual({ app: 'web' });

    expect(lastLine((await expectRollout(0, 'status', 'web', '--timeout', '60s')).stdout)).toBe(
      'Paused - CanaryPauseStep',
    );
    const imageOf = async (hash: string | undefined) =>
      (await replicaSets()).find((rs) => rs.metadata.labels?.[POD_TEMPLATE_HASH] === hash)?.spec.template.spec
        ?.containers?.[0]?.image;
    const paused = await get('web');
    expect(await imageOf(paused.status?.currentPodHash)).toBe('registry.example/web:1');
    // Revision 1's ReplicaSet is reused, not copied into a new revision.
    const first = (await replicaSets()).find(
      (rs) => rs.metadata.annotations?.['rollout.argoproj.io/revision'] === '1',
    );
    expect(paused.status?.currentPodHash).toBe(first?.metadata.labels?.[POD_TEMPLATE_HASH]);
    expect(await imageOf(paused.status?.stableRS)).toBe('registry.example/web:2');

    expect((await expectRollout(0, 'promote', 'web', '--full')).stdout).toBe(
      'rollout "web" fully promoted\n',
    );
    expect(lastLine((await expectRollout(0, 'status', 'web', '--timeout', '60s')).stdout)).toBe('Healthy');
    expect(await imageOf((await get('web')).status?.stableRS)).toBe('registry.example/web:1');
    const none = await expectRollout(1, 'undo', 'web', '--to-revision', '99');
    expect(none.stderr).toMatch(/has no revision 99 \(revisions: 1, 2, 3\)/);
  });

  test('pause holds the rollout until promote', async () => {
    expect((await expectRollout(0, 'pause', 'web')).stdout).toBe('rollout "web" paused\n');
    expect((await get('web')).spec.paused).toBe(true);
    expect(lastLine((await expectRollout(0, 'status', 'web', '--timeout', '60s')).stdout)).toBe(
      'Paused - manually paused',
    );
    expect((await expectRollout(0, 'promote', 'web')).stdout).toBe('rollout "web" promoted\n');
    expect((await get('web')).spec.paused).toBe(false);
    expect(lastLine((await expectRollout(0, 'status', 'web', '--timeout', '60s')).stdout)).toBe('Healthy');
  });

  test('status --image waits for the template to run that image (a GitOps gate), then for its phase', async () => {
    const before = await expectRollout(
      1,
      'status',
      'web',
      '--image',
      'registry.example/web:7',
      '--watch=false',
    );
    expect(before.stdout).toBe('Waiting - the rollout does not run registry.example/web:7 yet\n');
    // The gate starts before the change lands, as it does right after a promotion.
    const gate = expectRollout(0, 'status', 'web', '--image', 'registry.example/web:7', '--timeout', '60s');
    await new Promise((r) => setTimeout(r, 1500));
    await expectRollout(0, 'set', 'image', 'web', 'main=registry.example/web:7');
    const passed = await gate;
    expect(passed.stdout.split('\n')[0]).toBe(
      'Waiting - the rollout does not run registry.example/web:7 yet',
    );
    expect(lastLine(passed.stdout)).toBe('Paused - CanaryPauseStep');
    expect((await get('web')).status?.currentStepIndex).toBe(1);
  });

  test('status on an invalid Rollout fails at once with the reason, watching or not', async () => {
    // Its stable Service does not exist: the controller reports InvalidSpec and does nothing.
    await client.create(ROLLOUT, {
      apiVersion: ROLLOUT.apiVersion,
      kind: 'Rollout',
      metadata: { name: 'stuck', namespace: ns.name },
      spec: {
        selector: { matchLabels: { app: 'stuck' } },
        template: {
          metadata: { labels: { app: 'stuck' } },
          spec: { containers: [{ name: 'main', image: 'x:1' }] },
        },
        strategy: { canary: { stableService: 'missing' } },
      },
    } as never);
    const reason = `Degraded - InvalidSpec: service "missing" does not exist in namespace ${ns.name}`;
    const watched = await expectRollout(1, 'status', 'stuck', '--timeout', '60s');
    expect(lastLine(watched.stdout)).toBe(reason);
    expect(watched.stderr).toContain(
      'rollout "stuck" is Degraded: InvalidSpec: service "missing" does not exist',
    );
    expect(watched.stderr).not.toContain('timed out');
    const once = await expectRollout(1, 'status', 'stuck', '--watch=false');
    expect(once.stdout).toBe(`${reason}\n`);
  });

  test('status gives up after --timeout (exit 1) on a rollout that makes no progress', async () => {
    // Pods that no node accepts: the revision never becomes available.
    await client.create(ROLLOUT, {
      apiVersion: ROLLOUT.apiVersion,
      kind: 'Rollout',
      metadata: { name: 'unschedulable', namespace: ns.name },
      spec: {
        selector: { matchLabels: { app: 'unschedulable' } },
        template: {
          metadata: { labels: { app: 'unschedulable' } },
          spec: {
            nodeSelector: { 'kube-actions.dev/no-such-node': 'true' },
            containers: [{ name: 'main', image: 'x:1' }],
          },
        },
        strategy: { canary: {} },
      },
    } as never);
    const started = Date.now();
    const timedOut = await expectRollout(1, 'status', 'unschedulable', '--timeout', '2s');
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
    expect(lastLine(timedOut.stdout)).toMatch(/^Progressing - /);
    expect(timedOut.stderr).toContain('timed out after 2s waiting for rollout "unschedulable"');
  });
});
