// The controller as it ships: `kube-actions controller` processes (the bundled CLI) against the
// real control plane, two replicas electing a leader over a Lease, a Git push webhook driving syncs.
// Then the same controller in this process (a Manager), where its workers can be counted: long
// syncs must not hold them.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { KubeClient, isNotFound } from '../../src/core/kube/client.ts';
import { Logger } from '../../src/controller/runtime/log.ts';
import { Manager } from '../../src/controller/runtime/manager.ts';
import { setupApplicationController } from '../../src/controller/sync/controller.ts';
import { APPLICATION, type Application } from '../../src/controller/sync/types.ts';
import { installCRDs } from '../cluster/crds.ts';
import { pushWebhook } from '../cluster/push-webhook.ts';
import { GitServer } from '../cluster/git-server.ts';
import { freePort } from '../cluster/ports.ts';
import { NODE24 } from '../cluster/run-action.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const ns = useTestNamespace('appctl');
/** The in-process controller's own namespace: the CLI replicas watch `ns` only. */
const inproc = useTestNamespace('appctl-inproc');
const SECRET = 'webhook-secret-for-tests';
const CLI = resolve(import.meta.dirname, '../../dist/cli/index.js');
const CM = { apiVersion: 'v1', resource: 'configmaps' };

interface Replica {
  name: string;
  process: ChildProcess;
  webhookPort: number;
  metricsPort: number;
  logs: string[];
  exited: Promise<number | null>;
}

let server: GitServer;
let client: KubeClient;
let cacheRoot: string;
const replicas: Replica[] = [];

async function startReplica(name: string): Promise<Replica> {
  const webhookPort = await freePort();
  const metricsPort = await freePort();
  const child = spawn(
    NODE24,
    [
      CLI,
      'controller',
      '--namespace',
      ns.name,
      '--controller-namespace',
      ns.name,
      '--identity',
      name,
      '--lease-duration',
      '4s',
      '--renew-deadline',
      '3s',
      '--retry-period',
      '1s',
      '--metrics-port',
      String(metricsPort),
      '--webhook-port',
      String(webhookPort),
      '--poll-interval',
      '1h',
      '--cache-dir',
      join(cacheRoot, name),
    ],
    { env: { ...process.env, KUBE_ACTIONS_WEBHOOK_SECRET: SECRET }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const logs: string[] = [];
  child.stderr.on('data', (d: Buffer) => logs.push(...d.toString().split('\n').filter(Boolean)));
  child.stdout.on('data', (d: Buffer) => logs.push(...d.toString().split('\n').filter(Boolean)));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const replica = { name, process: child, webhookPort, metricsPort, logs, exited };
  replicas.push(replica);
  const healthy = async () => {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
    const ok = await fetch(`http://127.0.0.1:${metricsPort}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    return ok ? true : undefined;
  };
  await eventually(`${name} to serve /healthz`, healthy).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n${name} logs:\n${logs.join('\n')}`, { cause: err });
  });
  return replica;
}

async function metric(replica: Replica, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${replica.metricsPort}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => pattern.test(l))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

async function push(replica: Replica, repo: string, branch = 'main'): Promise<Response> {
  const { body, headers } = pushWebhook({ repoURL: server.url(repo), secret: SECRET, branch });
  return fetch(`http://127.0.0.1:${replica.webhookPort}/api/webhook`, { method: 'POST', body, headers });
}

async function configMap(name: string): Promise<{ data?: Record<string, string> } | undefined> {
  return client
    .get<{ metadata?: object; data?: Record<string, string> }>(CM, ns.name, name)
    .catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
}

async function leaseHolder(): Promise<string | undefined> {
  const lease = await client
    .get<{ metadata?: object; spec?: { holderIdentity?: string } }>(
      { apiVersion: 'coordination.k8s.io/v1', resource: 'leases' },
      ns.name,
      'kube-actions-controller',
    )
    .catch(() => undefined);
  return lease?.spec?.holderIdentity || undefined;
}

beforeAll(async () => {
  await installCRDs(ns.kc);
  server = await GitServer.start();
  client = new KubeClient(ns.kc);
  cacheRoot = await mkdtemp(join(tmpdir(), 'appctl-'));
});

async function stopReplicas(): Promise<void> {
  for (const r of replicas) r.process.kill('SIGTERM');
  await Promise.all(
    replicas.map((r) => Promise.race([r.exited, new Promise((res) => setTimeout(res, 10_000))])),
  );
  for (const r of replicas) r.process.kill('SIGKILL');
}

afterAll(async () => {
  await stopReplicas();
  await client?.close();
  await server?.stop();
  await rm(cacheRoot, { recursive: true, force: true });
});

describe('kube-actions controller (two replicas)', () => {
  // Nothing of theirs may run on: the next tests count what one controller does.
  afterAll(stopReplicas);

  test('one leader syncs; a webhook push is applied at once; the other replica takes over when the leader dies', async () => {
    await server.createRepo('fleet', {
      'apps/web/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  v: "1"\n',
    });
    const [a, b] = [await startReplica('replica-a'), await startReplica('replica-b')];
    const leaderName = await eventually('a leader', leaseHolder);
    const leader = leaderName === 'replica-a' ? a : b;
    const follower = leader === a ? b : a;

    await client.create(APPLICATION, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Application',
      metadata: { name: 'web', namespace: ns.name },
      spec: {
        source: { repoURL: server.url('fleet'), targetRevision: 'main', path: 'apps/web' },
        destination: { namespace: ns.name },
        syncPolicy: { automated: { prune: true, selfHeal: true } },
      },
    });
    await eventually('the first sync', async () =>
      (await configMap('web'))?.data?.v === '1' ? true : undefined,
    );
    const app = await eventually('status Synced', async () => {
      const got = await client.get<Application & { metadata: object }>(APPLICATION, ns.name, 'web');
      return got.status?.sync?.status === 'Synced' ? got : undefined;
    });
    expect(app.status?.sync?.revision).toBe(await server.revParse('fleet'));
    // The sync is told as Kubernetes Events on the Application (kubectl describe / kubectl events).
    const events = await eventually('sync events', async () => {
      const list = await client.request<{
        items: { reason: string; note: string; regarding: { name: string; kind: string } }[];
      }>('GET', `/apis/events.k8s.io/v1/namespaces/${ns.name}/events`);
      const mine = list.items.filter((e) => e.regarding.kind === 'Application' && e.regarding.name === 'web');
      return mine.some((e) => e.reason === 'OperationCompleted') ? mine : undefined;
    }).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${replicas.flatMap((r) => r.logs).join('\n')}`, {
        cause: err,
      });
    });
    expect(events.map((e) => e.reason)).toEqual(
      expect.arrayContaining(['OperationStarted', 'OperationCompleted']),
    );
    expect(events.find((e) => e.reason === 'OperationCompleted')!.note).toMatch(
      /^sync to [0-9a-f]{12} succeeded: successfully synced/,
    );

    // Only the leader writes: the follower has sent no write request at all.
    expect(await metric(leader, /^rest_client_requests_total\{.*verb="patch"/)).toBeGreaterThan(0);
    expect(
      await metric(follower, /^rest_client_requests_total\{.*verb="(patch|create|update|delete)".*code="2/),
    ).toBe(0);

    // The poll interval is an hour: only the webhook can make this sync happen now. Sent to the
    // follower, it becomes a refresh annotation that the leader's watch picks up. (How fast is
    // bench/sync.ts's to measure, not a test's.)
    const v2 = await server.commitFiles(
      'fleet',
      { 'apps/web/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  v: "2"\n' },
      'v2',
    );
    const sent = Date.now();
    const res = await push(follower, 'fleet');
    expect(res.status).toBe(200);
    const deployed = await eventually('v2 synced after the webhook', async () => {
      const got = await client.get<Application & { metadata: object }>(APPLICATION, ns.name, 'web');
      return got.status?.history?.find((h) => h.revision === v2);
    });
    expect(Date.parse(deployed.deployStartedAt)).toBeGreaterThanOrEqual(sent);
    expect((await configMap('web'))?.data?.v).toBe('2');

    // A forged webhook changes nothing.
    const forged = await fetch(`http://127.0.0.1:${leader.webhookPort}/api/webhook`, {
      method: 'POST',
      body: '{}',
      headers: { 'X-GitHub-Event': 'push', 'X-Hub-Signature-256': 'sha256=' + '0'.repeat(64) },
    });
    expect(forged.status).toBe(401);

    // The leader dies without releasing the lease; the follower takes over and keeps syncing.
    leader.process.kill('SIGKILL');
    await leader.exited;
    await eventually(
      'the follower to hold the lease',
      async () => ((await leaseHolder()) === follower.name ? true : undefined),
      60_000,
    );
    await server.commitFiles(
      'fleet',
      { 'apps/web/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  v: "3"\n' },
      'v3',
    );
    expect((await push(follower, 'fleet')).status).toBe(200);
    await eventually(
      'v3 applied by the new leader',
      async () => ((await configMap('web'))?.data?.v === '3' ? true : undefined),
      60_000,
    );
  });

  test('kube-actions app: list, get, diff, manual sync and rollback (refused while automated)', async () => {
    const run = (...args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolvePromise) => {
        const child = spawn(NODE24, [CLI, 'app', ...args, '-n', ns.name], { env: process.env });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('exit', (code) => resolvePromise({ code, stdout, stderr }));
      });
    const cm = (v: string) =>
      `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: manual\ndata:\n  v: "${v}"\n`;
    await server.createRepo('manual', { 'cm.yaml': cm('1') });
    await client.create(APPLICATION, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Application',
      metadata: { name: 'manual', namespace: ns.name },
      spec: {
        source: { repoURL: server.url('manual'), targetRevision: 'main' },
        destination: { namespace: ns.name },
      },
    });
    // Manual: nothing is applied until asked.
    await eventually('manual to be compared', async () => {
      const app = await client.get<Application & { metadata: object }>(APPLICATION, ns.name, 'manual');
      return app.status?.sync?.status === 'OutOfSync' ? true : undefined;
    });
    expect(await configMap('manual')).toBeUndefined();

    const diff1 = await run('diff', 'manual');
    expect(diff1.code).toBe(1);
    expect(diff1.stdout).toContain(`===== /ConfigMap/${ns.name}/manual =====`);
    expect(diff1.stdout).toContain('+  v: "1"');

    const sync1 = await run('sync', 'manual', '--timeout', '60s');
    expect([sync1.code, sync1.stderr]).toEqual([0, '']);
    expect(sync1.stdout).toMatch(/Synced\s+ConfigMap\/manual/);
    expect(sync1.stdout).toContain('Succeeded: successfully synced');
    expect((await configMap('manual'))?.data?.v).toBe('1');

    await server.commitFiles('manual', { 'cm.yaml': cm('2') }, 'v2');
    const diff2 = await run('diff', 'manual');
    expect(diff2.code).toBe(1);
    expect(diff2.stdout).toContain('-  v: "1"');
    expect(diff2.stdout).toContain('+  v: "2"');
    expect((await run('sync', 'manual')).code).toBe(0);
    expect((await configMap('manual'))?.data?.v).toBe('2');
    expect((await run('diff', 'manual')).code).toBe(0);

    const got = await run('get', 'manual');
    expect(got.stdout).toMatch(/Sync Status:\s+Synced/);
    expect(got.stdout).toMatch(/^0\s+\S+\s+[0-9a-f]{12}$/m);
    expect(got.stdout).toMatch(/^1\s+\S+\s+[0-9a-f]{12}$/m);

    const rollback = await run('rollback', 'manual', '0');
    expect(rollback.code).toBe(0);
    expect((await configMap('manual'))?.data?.v).toBe('1');

    const refused = await run('rollback', 'web', '0');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('automated sync is enabled');

    const list = await run('list', '-o', 'json');
    expect(
      (JSON.parse(list.stdout) as { items: Application[] }).items.map((a) => a.metadata.name).sort(),
    ).toEqual(['manual', 'web']);
    expect((await run('list')).stdout).toMatch(
      /^NAME\s+SYNC\s+HEALTH\s+REVISION\s+AGE\nmanual\s+OutOfSync\s+Healthy/m,
    );
  });

  test('an Application holding a Rollout: its health follows the rollout (Paused → Suspended), and selector changes by the rollout controller do not make it OutOfSync', async () => {
    const rollout = (image: string) => `apiVersion: kube-actions.dev/v1alpha1
kind: Rollout
metadata:
  name: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: shop}
  template:
    metadata:
      labels: {app: shop}
    spec:
      containers:
        - name: main
          image: ${image}
  strategy:
    canary:
      stableService: shop-stable
      canaryService: shop-canary
      steps:
        - setWeight: 50
        - pause: {}
`;
    const svc = (name: string) => `apiVersion: v1
kind: Service
metadata:
  name: ${name}
spec:
  selector: {app: shop}
  ports: [{port: 80}]
`;
    const alive =
      replicas.find((r) => r.process.exitCode === null && r.process.signalCode === null) ??
      (await startReplica('replica-c'));
    await server.createRepo('shop', {
      'stable.yaml': svc('shop-stable'),
      'canary.yaml': svc('shop-canary'),
      'rollout.yaml': rollout('shop:1'),
    });
    await client.create(APPLICATION, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Application',
      metadata: { name: 'shop', namespace: ns.name },
      spec: {
        source: { repoURL: server.url('shop'), targetRevision: 'main' },
        destination: { namespace: ns.name },
        syncPolicy: { automated: { prune: true, selfHeal: true } },
      },
    });
    const appIs = (sync: string, health: string) =>
      eventually(
        `the app ${sync}/${health}`,
        async () => {
          const app = await client.get<Application & { metadata: object }>(APPLICATION, ns.name, 'shop');
          return app.status?.sync?.status === sync && app.status.health?.status === health ? app : undefined;
        },
        60_000,
      );
    await appIs('Synced', 'Healthy');

    await server.commitFiles('shop', { 'rollout.yaml': rollout('shop:2') }, 'shop 2');
    expect((await push(alive, 'shop')).status).toBe(200);
    // The rollout pauses at 50%: the app is Suspended, and still Synced although the rollout
    // controller rewrote both Services' selectors.
    const paused = await appIs('Synced', 'Suspended');
    expect(paused.status?.health?.message ?? '').toMatch(/CanaryPauseStep|[Pp]aused/);
    const selector = await client.get<{ metadata?: object; spec?: { selector?: Record<string, string> } }>(
      { apiVersion: 'v1', resource: 'services' },
      ns.name,
      'shop-canary',
    );
    expect(Object.keys(selector.spec?.selector ?? {})).toContain('rollouts-pod-template-hash');

    await client.request(
      'PATCH',
      `/apis/kube-actions.dev/v1alpha1/namespaces/${ns.name}/rollouts/shop/status`,
      {
        body: { status: { pauseConditions: null } },
        contentType: 'application/merge-patch+json',
      },
    );
    await appIs('Synced', 'Healthy');
  });
});

describe('the Application controller in process', () => {
  const JOBS = { apiVersion: 'batch/v1', resource: 'jobs' };
  const cm = (name: string, v: string) =>
    `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  v: "${v}"\n`;
  // A PreSync hook that runs once the test resumes it: the wave each sync waits on.
  const slowHook = (name: string) => `apiVersion: batch/v1
kind: Job
metadata:
  name: ${name}
  annotations:
    argocd.argoproj.io/hook: PreSync
spec:
  suspend: true
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: registry.example/migrate:1
`;
  const getApp = (name: string) =>
    client.get<Application & { metadata: object }>(APPLICATION, inproc.name, name);
  const createApp = (name: string) =>
    client.create(APPLICATION, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Application',
      metadata: { name, namespace: inproc.name },
      spec: {
        source: { repoURL: server.url('many'), targetRevision: 'main', path: name },
        destination: { namespace: inproc.name },
        syncPolicy: { automated: { prune: true, selfHeal: true } },
      },
    });
  const hookJobs = async () =>
    (
      await client.request<{ items: { metadata: { name: string } }[] }>(
        'GET',
        `/apis/batch/v1/namespaces/${inproc.name}/jobs`,
      )
    ).items.map((j) => j.metadata.name);
  const healerData = () =>
    client
      .get<{ metadata?: object; data?: Record<string, string> }>(CM, inproc.name, 'healer')
      .then((c) => c.data?.v)
      .catch(() => undefined);

  test('ten syncs waiting on a slow wave hold no worker: another application is self-healed meanwhile, then all ten finish', async () => {
    const slow = Array.from({ length: 10 }, (_, i) => `slow-${i}`);
    const files: Record<string, string> = { 'healer/cm.yaml': cm('healer', '1') };
    for (const name of slow) {
      files[`${name}/hook.yaml`] = slowHook(`${name}-migrate`);
      files[`${name}/cm.yaml`] = cm(name, '1');
    }
    await server.createRepo('many', files);
    const manager = new Manager({
      kubeConfig: inproc.kc,
      logger: new Logger({ level: 'error', sink: () => undefined }),
    });
    // Three workers for ten syncs: a sync that held its worker while it waited would leave none.
    setupApplicationController(manager, {
      namespace: inproc.name,
      cacheDir: join(cacheRoot, 'in-process'),
      pollIntervalMs: 3_600_000,
      maxConcurrentReconciles: 3,
    });
    await manager.start();
    try {
      await createApp('healer');
      await eventually(
        'the healer to sync',
        async () =>
          (await healerData()) === '1' && (await getApp('healer')).status?.sync?.status === 'Synced'
            ? true
            : undefined,
        60_000,
      );
      for (const name of slow) await createApp(name);
      await eventually('the syncs to be under way', async () =>
        (await hookJobs()).length >= 3 ? true : undefined,
      );

      // Drift while every worker would be busy waiting: it is healed all the same, while the ten
      // still wait (with their workers held it would wait for the first wave to time out, in 5 min).
      await client.patch(CM, inproc.name, 'healer', { data: { v: 'drifted' } });
      await eventually(
        'the drift to be healed',
        async () => ((await healerData()) === '1' ? true : undefined),
        60_000,
      );
      const healed = await eventually('the heal to be in the status', async () => {
        const app = await getApp('healer');
        const op = app.status?.operationState;
        return op?.phase === 'Succeeded' && op.operation.sync?.autoHealAttemptsCount === 1 ? app : undefined;
      });
      expect(healed.status?.sync?.status).toBe('Synced');

      // Meanwhile all ten have started and wait on their hooks; none is done.
      await eventually('all ten syncs to wait on their PreSync wave', async () => {
        const states = await Promise.all(slow.map(async (n) => (await getApp(n)).status?.operationState));
        return states.every((s) => s?.phase === 'Running' && /^waiting for PreSync wave 0/.test(s.message))
          ? true
          : undefined;
      });
      expect((await hookJobs()).sort()).toEqual(slow.map((n) => `${n}-migrate`).sort());

      for (const name of slow) {
        await client.patch(JOBS, inproc.name, `${name}-migrate`, { spec: { suspend: false } });
      }
      await eventually(
        'all ten syncs to succeed',
        async () => {
          const apps = await Promise.all(slow.map(getApp));
          return apps.every((a) => a.status?.operationState?.phase === 'Succeeded') ? true : undefined;
        },
        90_000,
      );
      for (const name of slow) {
        const data = await client.get<{ metadata?: object; data?: Record<string, string> }>(
          CM,
          inproc.name,
          name,
        );
        expect(data.data).toEqual({ v: '1' });
      }
    } finally {
      await manager.stop();
    }
  });
});
