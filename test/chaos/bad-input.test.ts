// Issue 13's chaos suite, bad-input part: a corpus of hostile and broken inputs, one row each,
// fed to the real controllers running in this process (one Manager: the Application, Rollout and
// AnalysisRun controllers in a namespace of their own on the real control plane), to the render
// and promote libraries, and to the Git webhook handler. Every row must come out with:
// - a clear condition or error: its text matches the row's pattern;
// - 0 prunes and 0 partial applies: the live objects the area watches keep their resourceVersions
//   (nothing deleted, changed or added), nothing is pushed, nothing refreshed;
// - 0 crashes: no reconcile threw (a throw is retried with backoff forever and reported nowhere
//   the user looks), no unhandled rejection;
// - no hot loop: over a quiet window after the report, the controllers' API requests and
//   reconciles per second stay under a bound (counted from their own metrics registry), and the
//   event loop never stalls longer than MAX_STALL_MS while the case runs.
// Each row can fail: the invariants watch objects that the broken input would change if it were
// (even partly) acted on, and the areas end by feeding a good input and seeing it acted on.
// A table of every row is printed at the end.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { KubeClient, isNotFound, PatchType } from '../../src/core/kube/client.ts';
import { Logger } from '../../src/controller/runtime/log.ts';
import { Manager } from '../../src/controller/runtime/manager.ts';
import {
  setupApplicationController,
  type ApplicationController,
} from '../../src/controller/sync/controller.ts';
import { INSTANCE_LABEL } from '../../src/controller/sync/source.ts';
import { APPLICATION, type Application } from '../../src/controller/sync/types.ts';
import { signature } from '../../src/controller/sync/webhook.ts';
import { setupRolloutController } from '../../src/controller/rollout/controller.ts';
import { ROLLOUT, SERVICES, type ReplicaSet, type Rollout } from '../../src/controller/rollout/types.ts';
import { setupAnalysisController } from '../../src/controller/analysis/controller.ts';
import {
  ANALYSIS_RUN,
  ANALYSIS_TEMPLATE,
  type AnalysisRun,
  type Metric,
} from '../../src/controller/analysis/types.ts';
import { render } from '../../src/core/render/render.ts';
import { promote } from '../../src/core/gitops/promote.ts';
import { changeFromSpec, type PromoteChange } from '../../src/core/gitops/changes.ts';
import { installCRDs } from '../cluster/crds.ts';
import { GitServer } from '../cluster/git-server.ts';
import { pushWebhook } from '../cluster/push-webhook.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';
import {
  commitTree,
  counters,
  sleep,
  StallProbe,
  table,
  verbDelta,
  type Counters,
  type Row,
} from './bad-input-harness.ts';

const ns = useTestNamespace('chaos-input');
const SECRET = 'bad-input-webhook-secret';
const WEBHOOK_MAX_BODY = 64 * 1024;

// After each report the controllers finish reacting to it (its trailing writes: an Event, the
// operation cleared) and must then go quiet: no API request for `quietMs`, reached within
// MAX_SETTLE_MS (a loop faster than that never goes quiet: a violation). Then requests and
// reconciles are counted over a fixed window, which must hold no request either. Why these
// bounds: an idle controller here makes no API request at all (informers hold their watches
// open, status is written only when it changes), so once a report is complete the rate is 0
// unless something loops; together the two ask for quietMs + WINDOW_MS of silence (4.5 s for the
// Application controller, whose last word comes 2 s after a sync ends, 2.5 s elsewhere), which
// any loop of one request per 2.5 s or faster breaks. Real loops are far faster: a reconcile
// that throws is retried after 5, 10, 20 ... ms (client-go's per-item backoff), the 100 ms
// stale-status retry writes 10 times a second. 1 reconcile/s (a reconcile that makes no request)
// leaves room for the Application controller's 2 s re-look at a progressing application.
const WINDOW_MS = Number(process.env.BAD_INPUT_WINDOW_MS ?? 2000);
/** In-process areas (webhook, render, promote) do not drive the controllers: a shorter window. */
const SHORT_WINDOW_MS = Math.min(WINDOW_MS, 500);
const QUIET_MS = 500;
const APPLICATION_QUIET_MS = 2500;
const MAX_SETTLE_MS = 4000;
/** Requests in the window; 0.25/s: not one request in a 2 s window. */
const MAX_REQUESTS_PER_S = 0.25;
const MAX_RECONCILES_PER_S = 1;
/** A backtracking regex over ~25 characters already stalls ~1 s; probes and lease renewals need far less. */
const MAX_STALL_MS = 200;

let client: KubeClient;
let manager: Manager;
let apps: ApplicationController;
let server: GitServer;
let cacheDir: string;
let webhookURL: string;
let webhookServer: Server;
let metricServer: Server;
let metricBase: string;
const logs: string[] = [];
let unhandled = 0;
const onUnhandled = () => void unhandled++;
const rows: Row[] = [];
const stall = new StallProbe();

type Area = 'Application' | 'Rollout' | 'AnalysisTemplate' | 'AnalysisRun' | 'webhook' | 'render' | 'promote';

/** What must not change while a case runs: a fingerprint, and how two of them differ. */
interface Watched<S> {
  snapshot: () => Promise<S>;
  /** Violations, each tagged: prune (something deleted), partial (something written), other. */
  compare: (before: S, after: S) => { prunes: string[]; partial: string[]; other: string[] };
}

interface Case {
  area: Area;
  name: string;
  /** The clear condition or error this input must produce. */
  expect: RegExp;
  /** Before the fingerprint is taken (e.g. a first, legitimate delivery of a replayed webhook). */
  setup?: () => Promise<void>;
  /** Feeds the bad input and waits until it is reported; returns the report (or the error's text). */
  run: () => Promise<string>;
  /** After the window: puts back what the case changed besides the input itself. */
  cleanup?: () => Promise<void>;
  /** A bug this suite found that the test's owner may not fix here: runs as test.failing. */
  knownBug?: string;
  /** Where the input itself is big, synchronous work on it is expected (documented at the row). */
  maxStallMs?: number;
}

const noWatch: Watched<null> = {
  snapshot: () => Promise.resolve(null),
  compare: () => ({ prunes: [], partial: [], other: [] }),
};

/** Waits until the controllers made no API request for `quietMs` (at most MAX_SETTLE_MS). */
async function settle(quietMs: number): Promise<{ at: Counters; quiet: boolean }> {
  let last = await counters(manager);
  if (quietMs === 0) return { at: last, quiet: true };
  const deadline = Date.now() + MAX_SETTLE_MS;
  let quietSince = Date.now();
  while (Date.now() < deadline) {
    await sleep(100);
    const now = await counters(manager);
    if (now.requests !== last.requests) quietSince = Date.now();
    last = now;
    if (Date.now() - quietSince >= quietMs) return { at: last, quiet: true };
  }
  return { at: last, quiet: false };
}

/** Runs one row: feed, wait for the report, measure the quiet window, compare, assert. */
interface Timing {
  windowMs: number;
  quietMs: number;
}
const CLUSTER: Timing = { windowMs: WINDOW_MS, quietMs: QUIET_MS };
/** In process: nothing of the controllers' to wait for. */
const IN_PROCESS: Timing = { windowMs: SHORT_WINDOW_MS, quietMs: 0 };

async function runCase<S>(c: Case, watched: Watched<S>, { windowMs, quietMs }: Timing): Promise<void> {
  await c.setup?.();
  const before = await watched.snapshot();
  const c0 = await counters(manager);
  const unhandled0 = unhandled;
  const logsAt = logs.length;
  stall.start();
  let outcome: string;
  try {
    outcome = await c.run();
  } catch (err) {
    outcome = `(not reported) ${(err as Error).message}`;
  }
  const { at: c1, quiet } = await settle(quietMs);
  await sleep(windowMs);
  const c2 = await counters(manager);
  const stallMs = stall.stop();
  const after = await watched.snapshot();
  await c.cleanup?.();
  const diff = watched.compare(before, after);
  const per = (f: (x: Counters) => number) => ((f(c2) - f(c1)) * 1000) / windowMs;
  const crashes = c2.errors - c0.errors + (unhandled - unhandled0);
  const row: Row = {
    area: c.area,
    name: c.name,
    outcome,
    clear: c.expect.test(outcome),
    rate: per((x) => x.requests),
    reconcileRate: per((x) => x.reconciles),
    stallMs,
    quiet,
    prunes: diff.prunes.length,
    partialApplies: diff.partial.length + diff.other.length,
    crashes,
    ...(c.knownBug ? { knownBug: c.knownBug } : {}),
  };
  rows.push(row);
  const maxRate = MAX_REQUESTS_PER_S;
  const violations = [
    ...(row.clear ? [] : [`outcome does not match ${c.expect}: ${outcome}`]),
    ...diff.prunes.map((p) => `prune: ${p}`),
    ...diff.partial.map((p) => `partial apply: ${p}`),
    ...diff.other,
    ...(crashes > 0
      ? [
          `${crashes} crash(es): ${logs
            .slice(logsAt)
            .filter((l) => l.includes('"error"'))
            .slice(0, 3)
            .join('\n')}`,
        ]
      : []),
    ...(quiet
      ? []
      : [`hot loop: no ${quietMs} ms without an API request in the ${MAX_SETTLE_MS} ms after the report`]),
    ...(row.rate > maxRate
      ? [`hot loop: ${row.rate.toFixed(2)} API requests/s > ${maxRate} (${verbDelta(c1, c2)})`]
      : []),
    ...(row.reconcileRate > MAX_RECONCILES_PER_S
      ? [`hot loop: ${row.reconcileRate.toFixed(2)} reconciles/s > ${MAX_RECONCILES_PER_S}`]
      : []),
    ...(stallMs > (c.maxStallMs ?? MAX_STALL_MS)
      ? [`event loop stalled ${stallMs.toFixed(0)} ms > ${c.maxStallMs ?? MAX_STALL_MS}`]
      : []),
  ];
  expect(violations).toEqual([]);
}

/** One test per row; a known bug runs as test.failing (it passes once the bug is fixed). */
function corpus<S>(cases: Case[], watched: Watched<S>, timing = CLUSTER): void {
  // What the area before left running is over before this area's first row.
  beforeAll(() => settle(timing.quietMs || QUIET_MS), 30_000);
  for (const c of cases) {
    const title = `${c.name}${c.knownBug ? ` (known bug: ${c.knownBug})` : ''}`;
    (c.knownBug ? test.failing : test)(title, () => runCase(c, watched, timing), 90_000);
  }
}

const errorText = (err: unknown) => `${(err as Error).name}: ${(err as Error).message}`;

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  await installCRDs(ns.kc);
  client = new KubeClient(ns.kc);
  server = await GitServer.start();
  cacheDir = await mkdtemp(join(tmpdir(), 'bad-input-cache-'));
  manager = new Manager({
    kubeConfig: ns.kc,
    // BAD_INPUT_LOG=debug shows what the controllers do during each row (on stderr).
    logger: new Logger({
      level: (process.env.BAD_INPUT_LOG as 'debug' | undefined) ?? 'warn',
      sink: (line) => {
        logs.push(line);
        if (process.env.BAD_INPUT_LOG) process.stderr.write(`${new Date().toISOString()} ${line}\n`);
      },
    }),
  });
  apps = setupApplicationController(manager, {
    namespace: ns.name,
    cacheDir,
    // Only the test's refreshes (and the webhook) make the controller look at Git.
    pollIntervalMs: 3_600_000,
    webhookSecret: SECRET,
    webhookMaxBodyBytes: WEBHOOK_MAX_BODY,
  });
  setupRolloutController(manager, { namespace: ns.name });
  setupAnalysisController(manager, { namespace: ns.name });
  await manager.start();
  await eventually('the controllers synced', () => Promise.resolve(manager.readiness().ready || undefined));

  webhookServer = createServer((req, res) => void apps.webhook(req, res));
  await new Promise<void>((r) => webhookServer.listen(0, '127.0.0.1', r));
  webhookURL = `http://127.0.0.1:${(webhookServer.address() as AddressInfo).port}/api/webhook`;

  // What web metrics measure: long strings for the hostile regexes.
  metricServer = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const body =
      path === '/long'
        ? { v: `${'a'.repeat(9_999)}!` }
        : path === '/too-long'
          ? { v: 'a'.repeat(20_000) }
          : { ok: true, v: 1 };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((r) => metricServer.listen(0, '127.0.0.1', r));
  metricBase = `http://127.0.0.1:${(metricServer.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  if (rows.length) console.log(`bad-input corpus:\n${table(rows)}`);
  await manager?.stop();
  await client?.close();
  await server?.stop();
  await new Promise((r) => webhookServer?.close(r));
  await new Promise((r) => metricServer?.close(r));
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

// ---- Application -------------------------------------------------------------------------------

const cm = (name: string, v: string, extra = '') =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n${extra}data:\n  v: "${v}"\n`;
const SVC = `apiVersion: v1
kind: Service
metadata:
  name: web-svc
spec:
  selector: {app: web-nothing}
  ports: [{port: 80}]
`;
/** The healthy tree: what is live when each Application case starts. */
const GOOD_TREE = { 'cm-a.yaml': cm('web-a', '1'), 'cm-b.yaml': cm('web-b', '1'), 'svc.yaml': SVC };
/**
 * Every broken commit also changes web-a and drops web-b: acting on any part of it would change
 * web-a's resourceVersion (a partial apply) or delete web-b (a prune).
 */
const BROKEN_BASE = { 'cm-a.yaml': cm('web-a', '2'), 'svc.yaml': SVC };
const fleetBare = () => join(server.root, 'fleet.git');
const getApp = () => client.get<Application & { metadata: object }>(APPLICATION, ns.name, 'web');
const appSpec = () => ({
  source: { repoURL: server.url('fleet'), targetRevision: 'main', path: 'apps/web' },
  destination: { namespace: ns.name },
  syncPolicy: { automated: { prune: true, selfHeal: true } },
});

/** The Application's conditions and operation, one line each, as `kubectl describe` shows them. */
function reportLines(app: Application): string[] {
  const op = app.status?.operationState;
  return [
    ...(app.status?.conditions ?? []).map((c) => `${c.type}: ${c.message}`),
    ...(op ? [`operation ${op.phase}: ${op.message}`] : []),
  ];
}

async function appReport(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
  let last: string[] = [];
  try {
    return await eventually(
      `the application to report ${pattern}`,
      async () => {
        last = reportLines(await getApp());
        return last.find((l) => pattern.test(l));
      },
      timeoutMs,
    );
  } catch {
    return `(not reported) last conditions: ${last.join(' | ') || 'none'}`;
  }
}

/** Pushes apps/web as BROKEN_BASE plus `files`, refreshes the application, waits for `pattern`. */
async function pushBroken(
  files: Record<string, string>,
  pattern: RegExp,
  symlinks?: Record<string, string>,
): Promise<string> {
  await commitTree(fleetBare(), 'apps/web', { ...BROKEN_BASE, ...files }, { symlinks: symlinks ?? {} });
  // What a push webhook does on the leader: forget the cached branch head, reconcile now.
  await apps.refresh({ repoURLs: [server.url('fleet')], ref: 'refs/heads/main' });
  return appReport(pattern);
}

async function patchAppSpec(patch: Record<string, unknown>): Promise<void> {
  await client.patch(APPLICATION, ns.name, 'web', { spec: patch }, PatchType.merge);
}

interface LiveObject {
  uid: string;
  resourceVersion: string;
}
interface AppSnapshot {
  objects: Map<string, LiveObject>;
  history: number;
}

const appWatch: Watched<AppSnapshot> = {
  snapshot: async () => {
    const objects = new Map<string, LiveObject>();
    for (const [kind, path] of [
      ['ConfigMap', `/api/v1/namespaces/${ns.name}/configmaps`],
      ['Service', `/api/v1/namespaces/${ns.name}/services`],
      ['Deployment', `/apis/apps/v1/namespaces/${ns.name}/deployments`],
    ] as const) {
      const list = await client.request<{ items: { metadata: LiveObject & { name: string } }[] }>(
        'GET',
        path,
        {
          query: { labelSelector: INSTANCE_LABEL },
        },
      );
      for (const o of list.items) objects.set(`${kind}/${o.metadata.name}`, o.metadata);
    }
    return { objects, history: (await getApp()).status?.history?.length ?? 0 };
  },
  compare: (before, after) => {
    const prunes = [...before.objects.keys()].filter((k) => !after.objects.has(k));
    const partial = [...after.objects].flatMap(([k, o]) => {
      const was = before.objects.get(k);
      if (!was) return [`${k} created`];
      return was.uid !== o.uid || was.resourceVersion !== o.resourceVersion ? [`${k} changed`] : [];
    });
    const other =
      after.history > before.history
        ? [`a sync succeeded (history ${before.history} → ${after.history})`]
        : [];
    return { prunes, partial, other };
  },
};

/** Enough `../` to reach / from any checkout directory. */
const UP = '../'.repeat(40);

const applicationCases: Case[] = [
  {
    area: 'Application',
    name: 'invalid YAML (unclosed flow sequence)',
    expect: /^ComparisonError: rendering apps\/web at [0-9a-f]{12} failed: apps\/web\/bad\.yaml:\d+: /,
    run: () =>
      pushBroken(
        { 'bad.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata: {a: [1, 2}\n' },
        /bad\.yaml/,
      ),
  },
  {
    area: 'Application',
    name: 'YAML alias bomb (billion laughs)',
    expect:
      /^ComparisonError: rendering apps\/web at [0-9a-f]{12} failed: apps\/web\/bomb\.yaml: Excessive alias count/,
    run: () => pushBroken({ 'bomb.yaml': aliasBomb() }, /[Ee]xcessive alias/),
  },
  {
    area: 'Application',
    name: 'duplicate objects (two files, one ConfigMap)',
    expect: /^ComparisonError: .*duplicate ConfigMap "web-a" \(first defined at apps\/web\/cm-a\.yaml:\d+\)/,
    run: () => pushBroken({ 'copy.yaml': cm('web-a', '3') }, /duplicate ConfigMap/),
  },
  {
    area: 'Application',
    name: 'object of an unknown kind',
    expect: /^ComparisonError: cannot map objects to API resources:[\s\S]*Frobnicator/,
    run: () =>
      pushBroken(
        { 'frob.yaml': 'apiVersion: chaos.example.com/v1\nkind: Frobnicator\nmetadata:\n  name: frob\n' },
        /Frobnicator/,
      ),
  },
  {
    area: 'Application',
    name: 'path escape: a kustomize base outside the checkout',
    expect: /^ComparisonError: rendering .* failed: kustomize base ".*etc" is outside the workspace/,
    run: () =>
      pushBroken(
        { 'kustomization.yaml': `resources:\n  - cm-a.yaml\n  - ${UP}etc\n` },
        /outside the workspace|etc/,
      ),
  },
  {
    area: 'Application',
    name: 'path escape: a manifest symlinked out of the checkout',
    expect:
      /^ComparisonError: rendering .* failed: manifest "apps\/web\/leak\.yaml" is a symlink to \/etc\/hostname, outside/,
    run: () => pushBroken({}, /leak\.yaml/, { 'leak.yaml': '/etc/hostname' }),
  },
  {
    area: 'Application',
    name: 'path escape: spec.source.path ../../..',
    expect:
      /^ComparisonError: rendering \.\.\/\.\.\/\.\. at [0-9a-f]{12} failed: source path "\.\.\/\.\.\/\.\." is outside the workspace/,
    run: async () => {
      await patchAppSpec({ source: { ...appSpec().source, path: '../../..' } });
      return appReport(/source path/);
    },
    cleanup: async () => {
      await patchAppSpec({ source: appSpec().source });
      await eventually('the path to be back', async () =>
        reportLines(await getApp()).some((l) => l.includes('source path')) ? undefined : true,
      );
    },
  },
  {
    area: 'Application',
    name: 'missing reference: targetRevision that does not exist',
    expect: /^ComparisonError: .*no-such-branch/,
    run: async () => {
      await patchAppSpec({ source: { ...appSpec().source, targetRevision: 'no-such-branch' } });
      return appReport(/no-such-branch/);
    },
    cleanup: async () => {
      await patchAppSpec({ source: appSpec().source });
      await eventually('the revision to be back', async () =>
        reportLines(await getApp()).some((l) => l.includes('no-such-branch')) ? undefined : true,
      );
    },
  },
  {
    area: 'Application',
    name: 'repoURL that reads the controller’s disk (file:///etc)',
    expect:
      /^InvalidSpecError: spec\.source\.repoURL must be an https, http, ssh or git URL, got "file:\/\/\/etc"/,
    run: async () => {
      await patchAppSpec({ source: { ...appSpec().source, repoURL: 'file:///etc' } });
      return appReport(/InvalidSpecError/);
    },
    cleanup: async () => {
      await patchAppSpec({ source: appSpec().source });
      await eventually('the repoURL to be back', async () =>
        reportLines(await getApp()).some((l) => l.includes('InvalidSpecError')) ? undefined : true,
      );
    },
  },
  {
    area: 'Application',
    name: 'YAML alias bomb in spec.source.helm.values',
    expect: /^ComparisonError: .*[Ee]xcessive alias count/,
    run: async () => {
      const values = bombLines('');
      await patchAppSpec({ source: { ...appSpec().source, helm: { values, valuesObject: { a: 1 } } } });
      return appReport(/[Ee]xcessive alias/, 4000);
    },
    cleanup: async () => {
      await patchAppSpec({ source: { ...appSpec().source, helm: null } });
      await sleep(1000);
    },
  },
  // The server refuses these (the sync's plan or its dry-run): the refused object stays missing,
  // and the application is looked at again on its poll, not every 2 s, resending the dry-run.
  {
    area: 'Application',
    name: 'duplicate objects (one names the destination namespace)',
    // Not refused by the render (which cannot know the destination), but by the sync's plan, before anything.
    expect:
      /^SyncError: (the last sync of [0-9a-f]{12} failed; not retrying: )?ConfigMap "web-dup" in namespace "chaos-input-[0-9a-f]{6}": defined more than once$/,
    run: () =>
      pushBroken(
        {
          'dup-1.yaml': cm('web-dup', '1'),
          'dup-2.yaml': cm('web-dup', '2', `  namespace: ${ns.name}\n`),
        },
        /web-dup/,
      ),
  },
  {
    area: 'Application',
    name: 'int32 extreme: Deployment replicas 2147483648',
    // The apiserver reads 2147483648 into an int32 (wrapping it) and refuses that: its message.
    // Reported by the comparison's dry-run and by the refused sync: either line is clear.
    expect:
      /^(ComparisonError: |SyncError: one or more objects failed to apply \(dry run\), nothing was applied:\n)Deployment "web-deploy" .*spec\.replicas: Invalid value/,
    run: () =>
      pushBroken(
        {
          'deploy.yaml': `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-deploy
spec:
  replicas: 2147483648
  selector: {matchLabels: {app: web-deploy}}
  template:
    metadata: {labels: {app: web-deploy}}
    spec: {containers: [{name: main, image: registry.example/web:1}]}
`,
        },
        /web-deploy/,
      ),
  },
  {
    area: 'Application',
    name: 'huge manifest (a 1.2 MB ConfigMap)',
    // Parsing 1.2 MB of YAML and sending it as a dry-run's JSON is synchronous work: 150-300 ms on
    // this machine. 1 s still catches parsing that grows faster than the input.
    maxStallMs: 1000,
    expect:
      /^(ComparisonError: |SyncError: one or more objects failed to apply \(dry run\), nothing was applied:\n)ConfigMap "web-huge" .*Too long: may not be more than 1048576 bytes/,
    run: () =>
      pushBroken(
        {
          'huge.yaml': `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-huge\ndata:\n  blob: "${'x'.repeat(1_200_000)}"\n`,
        },
        /web-huge/,
      ),
  },
  {
    area: 'Application',
    name: 'missing reference: an object in a namespace that does not exist',
    // Reported by the comparison's dry-run, and again by the refused sync: either line is clear.
    expect:
      /^(ComparisonError: |SyncError: .*nothing was applied:\n)ConfigMap "web-elsewhere" in namespace "chaos-no-such-ns": namespaces "chaos-no-such-ns" not found$/,
    run: () =>
      pushBroken(
        { 'elsewhere.yaml': cm('web-elsewhere', '1', '  namespace: chaos-no-such-ns\n') },
        /web-elsewhere/,
      ),
  },
];

describe('Application: broken commits and specs on a healthy, synced application', () => {
  beforeAll(async () => {
    await server.createRepo('fleet', { 'README.md': 'fleet\n' });
    await commitTree(fleetBare(), 'apps/web', GOOD_TREE, { message: 'good' });
    await client.create(APPLICATION, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Application',
      metadata: { name: 'web', namespace: ns.name },
      spec: appSpec(),
    });
    await eventually(
      'the application Synced and Healthy',
      async () => {
        const app = await getApp();
        return app.status?.sync?.status === 'Synced' && app.status.health?.status === 'Healthy'
          ? true
          : undefined;
      },
      60_000,
    );
  }, 90_000);

  // The controller looks at an application again 2 s after a sync ends (progressingRequeueMs) and
  // reports the final word then ("not retrying"): its report is complete only after that.
  corpus(applicationCases, appWatch, { windowMs: WINDOW_MS, quietMs: APPLICATION_QUIET_MS });

  test('afterwards a good commit is applied and pruned at once (the invariants above could see it)', async () => {
    const before = await appWatch.snapshot();
    await commitTree(fleetBare(), 'apps/web', BROKEN_BASE, { message: 'good again: web-a 2, no web-b' });
    await apps.refresh({ repoURLs: [server.url('fleet')], ref: 'refs/heads/main' });
    const after = await eventually('web-a changed and web-b pruned', async () => {
      const s = await appWatch.snapshot();
      return s.objects.has('ConfigMap/web-b') ? undefined : s;
    });
    const diff = appWatch.compare(before, after);
    expect(diff.prunes).toEqual(['ConfigMap/web-b']);
    expect(diff.partial).toEqual(['ConfigMap/web-a changed']);
    await eventually('the application Synced and Healthy again', async () => {
      const app = await getApp();
      return app.status?.sync?.status === 'Synced' && app.status.health?.status === 'Healthy'
        ? true
        : undefined;
    });
    // Its last word comes 2 s after the sync: over before the next area measures.
    expect((await settle(APPLICATION_QUIET_MS)).quiet).toBe(true);
  });
});

// ---- webhook ---------------------------------------------------------------------------------------

interface Reply {
  status: number;
  message: string;
}

/** POSTs to the webhook with node:http (the server may close the connection after refusing). */
function post(body: Buffer | string, headers: Record<string, string>, method = 'POST'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(webhookURL, { method, headers }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        let message = text.trim();
        try {
          message = (JSON.parse(text) as { message: string }).message;
        } catch {
          // not JSON: keep the text
        }
        resolve({ status: res.statusCode ?? 0, message });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const signed = (body: string, event = 'push', delivery = `d-${Math.random().toString(16).slice(2)}`) => ({
  'content-type': 'application/json',
  'x-github-event': event,
  'x-github-delivery': delivery,
  'x-hub-signature-256': signature(SECRET, Buffer.from(body)),
});
const replyText = (r: Reply) => `${r.status} ${r.message}`;
const fleetPush = () =>
  JSON.stringify({
    ref: 'refs/heads/main',
    repository: { clone_url: server.url('fleet'), default_branch: 'main' },
  });
let replayed: { body: string; headers: Record<string, string> } | undefined;

/** A webhook that refreshed anything made the controller ask Git: counted, and none allowed. */
const webhookWatch: Watched<number> = {
  snapshot: async () => (await counters(manager)).lsRemotes,
  compare: (before, after) => ({
    prunes: [],
    partial: [],
    other: after > before ? [`the webhook refreshed (${after - before} ls-remote)`] : [],
  }),
};

const webhookCases: Case[] = [
  {
    area: 'webhook',
    name: 'forged signature',
    expect: /^401 missing or invalid X-Hub-Signature-256$/,
    run: async () =>
      replyText(
        await post(fleetPush(), {
          ...signed(fleetPush()),
          'x-hub-signature-256': `sha256=${'0'.repeat(64)}`,
        }),
      ),
  },
  {
    area: 'webhook',
    name: 'signed with another secret',
    expect: /^401 missing or invalid X-Hub-Signature-256$/,
    run: async () =>
      replyText(
        await post(fleetPush(), {
          ...signed(fleetPush()),
          'x-hub-signature-256': signature('not-the-secret', Buffer.from(fleetPush())),
        }),
      ),
  },
  {
    area: 'webhook',
    name: 'replayed delivery',
    expect: /^200 delivery \S+ already handled$/,
    setup: async () => {
      const { body, headers } = pushWebhook({ repoURL: server.url('fleet'), secret: SECRET });
      replayed = { body, headers };
      const first = await post(body, headers);
      if (first.status !== 200 || !/refreshed 1 application/.test(first.message))
        throw new Error(`the first delivery was not handled: ${replyText(first)}`);
      // Its refresh is over before the fingerprint.
      await sleep(1500);
    },
    run: async () => replyText(await post(replayed!.body, replayed!.headers)),
  },
  {
    area: 'webhook',
    name: 'oversized body (declared length over the cap)',
    expect: new RegExp(`^413 payload too large \\(limit ${WEBHOOK_MAX_BODY} bytes\\)$`),
    run: async () => {
      const body = JSON.stringify({ ref: 'refs/heads/main', pad: 'x'.repeat(WEBHOOK_MAX_BODY) });
      return replyText(await post(body, signed(body)));
    },
  },
  {
    area: 'webhook',
    name: 'signed body that is not JSON',
    expect: /^400 the body is not JSON$/,
    run: async () => replyText(await post('ref=refs/heads/main&{', signed('ref=refs/heads/main&{'))),
  },
  {
    area: 'webhook',
    name: 'wrong event (issues)',
    // (Answered 202 "ignored" before; webhook.ts now says why it is refused.)
    expect:
      /^(202 event issues ignored|400 event issues is not handled: only push \(and ping\) events are.*)$/,
    run: async () => replyText(await post(fleetPush(), signed(fleetPush(), 'issues'))),
  },
  {
    area: 'webhook',
    name: 'signed JSON that is not a push payload',
    expect: /^400 not a push event payload$/,
    run: async () => replyText(await post('{"zen":"hi"}', signed('{"zen":"hi"}'))),
  },
];

describe('webhook: forged, replayed, oversized and malformed deliveries (handler in process)', () => {
  corpus(webhookCases, webhookWatch, IN_PROCESS);
});

// ---- Rollout and AnalysisTemplate ------------------------------------------------------------------

const RO = 'ro-web';
const roTemplate = (image: string) => ({
  metadata: { labels: { app: RO } },
  spec: { containers: [{ name: 'main', image }] },
});
const roBaseSpec = (): Rollout['spec'] => ({
  replicas: 2,
  selector: { matchLabels: { app: RO } },
  template: roTemplate('registry.example/ro-web:1'),
  strategy: {
    canary: {
      stableService: 'ro-stable',
      canaryService: 'ro-canary',
      steps: [{ setWeight: 50 }, { pause: {} }],
    },
  },
});
const getRollout = (name = RO) => client.get<Rollout>(ROLLOUT, ns.name, name);

async function service(name: string, app: string): Promise<void> {
  await client.create(SERVICES, {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: ns.name },
    spec: { selector: { app }, ports: [{ port: 80 }] },
  } as never);
}

async function replicaSetsOf(rollout: string): Promise<ReplicaSet[]> {
  const list = await client.request<{ items: ReplicaSet[] }>(
    'GET',
    `/apis/apps/v1/namespaces/${ns.name}/replicasets`,
  );
  return list.items.filter((rs) => rs.metadata.ownerReferences?.some((o) => o.name === rollout));
}

/**
 * Replaces the rollout's whole spec with `mutate(base)`, where base also carries a new image: a
 * controller that acted on the broken spec would start a revision (a new ReplicaSet). Waits for
 * the InvalidSpec of that generation; returns it, or the apiserver's refusal.
 */
async function breakRollout(mutate: (spec: Rollout['spec']) => void, tag: string): Promise<string> {
  const spec = roBaseSpec();
  spec.template = roTemplate(`registry.example/ro-web:bad-${tag}`);
  mutate(spec);
  let generation: number | undefined;
  try {
    const written = await client.request<Rollout>(
      'PATCH',
      `/apis/kube-actions.dev/v1alpha1/namespaces/${ns.name}/rollouts/${RO}`,
      {
        body: [{ op: 'replace', path: '/spec', value: spec }],
        contentType: PatchType.json,
      },
    );
    generation = written.metadata.generation;
  } catch (err) {
    return `refused by the apiserver: ${apiMessage(err)}`;
  }
  let last = '';
  try {
    return await eventually(
      'the InvalidSpec condition',
      async () => {
        const ro = await getRollout();
        const c = ro.status?.conditions?.find((x) => x.type === 'InvalidSpec' && x.status === 'True');
        last = `${ro.status?.phase}: ${ro.status?.message ?? ''}`;
        return c && ro.status?.observedGeneration === String(generation)
          ? `InvalidSpec: ${c.message}`
          : undefined;
      },
      20_000,
    );
  } catch {
    return `(not reported) ${last}`;
  }
}

/** The apiserver's own message from a client error ("HTTP-Code: 422 Message: PATCH /…: <this>"). */
function apiMessage(err: unknown): string {
  const text = (err as Error).message;
  return /Message: (?:[A-Z]+ \S+: )?(.*)/.exec(text)?.[1] ?? text;
}

interface RolloutSnapshot {
  replicaSets: Map<string, string>;
  services: Map<string, string>;
  runs: string[];
}

const rolloutWatch: Watched<RolloutSnapshot> = {
  snapshot: async () => {
    const replicaSets = new Map(
      (await replicaSetsOf(RO)).map((rs) => [rs.metadata.name, rs.metadata.resourceVersion!]),
    );
    const services = new Map<string, string>();
    for (const name of ['ro-stable', 'ro-canary']) {
      const svc = await client.get<{ metadata: { resourceVersion: string } }>(SERVICES, ns.name, name);
      services.set(name, svc.metadata.resourceVersion);
    }
    const runs = await client.request<{ items: AnalysisRun[] }>(
      'GET',
      `/apis/kube-actions.dev/v1alpha1/namespaces/${ns.name}/analysisruns`,
    );
    return {
      replicaSets,
      services,
      runs: runs.items
        .filter((r) => r.metadata.ownerReferences?.some((o) => o.name === RO))
        .map((r) => r.metadata.name!),
    };
  },
  compare: (before, after) => {
    const prunes = [...before.replicaSets.keys()]
      .filter((k) => !after.replicaSets.has(k))
      .map((k) => `ReplicaSet/${k}`);
    const partial = [
      ...[...after.replicaSets].flatMap(([k, rv]) =>
        !before.replicaSets.has(k)
          ? [`ReplicaSet/${k} created`]
          : before.replicaSets.get(k) !== rv
            ? [`ReplicaSet/${k} changed`]
            : [],
      ),
      ...[...after.services].flatMap(([k, rv]) =>
        before.services.get(k) !== rv ? [`Service/${k} changed`] : [],
      ),
      ...after.runs.filter((r) => !before.runs.includes(r)).map((r) => `AnalysisRun/${r} created`),
    ];
    return { prunes, partial, other: [] };
  },
};

type Canary = NonNullable<NonNullable<Rollout['spec']['strategy']>['canary']>;
const canaryOf = (spec: Rollout['spec']): Canary => spec.strategy!.canary!;
const withSteps = (steps: unknown[]) => (spec: Rollout['spec']) => {
  canaryOf(spec).steps = steps as Canary['steps'];
};

const rolloutCases: Case[] = [
  {
    area: 'Rollout',
    name: 'bad maxSurge ("abc")',
    expect:
      /^InvalidSpec: strategy\.canary\.maxSurge: invalid value "abc": expected an integer or a percentage$/,
    run: () => breakRollout((s) => void (canaryOf(s).maxSurge = 'abc'), 'surge'),
  },
  {
    area: 'Rollout',
    name: 'negative maxUnavailable (-1)',
    expect: /^InvalidSpec: strategy\.canary\.maxUnavailable: invalid value "-1": must not be negative$/,
    run: () => breakRollout((s) => void (canaryOf(s).maxUnavailable = -1), 'unavailable'),
  },
  {
    area: 'Rollout',
    name: 'string pause (pause: "5m")',
    expect: /^InvalidSpec: steps\[1\]\.pause must be an object such as \{\} or \{duration: 30s\}$/,
    run: () => breakRollout(withSteps([{ setWeight: 50 }, { pause: '5m' }]), 'pause-string'),
  },
  {
    area: 'Rollout',
    name: 'unknown step field (setWeigth)',
    expect: /^InvalidSpec: steps\[0\] has unknown field setWeigth/,
    run: () => breakRollout(withSteps([{ setWeigth: 50 }]), 'typo'),
  },
  {
    area: 'Rollout',
    name: 'step with two actions',
    // (The apiserver stores the step's keys sorted.)
    expect:
      /^InvalidSpec: steps\[0\] must set exactly one of setWeight, pause, setCanaryScale, analysis \(has: (pause, setWeight|setWeight, pause)\)$/,
    run: () => breakRollout(withSteps([{ setWeight: 20, pause: {} }]), 'two'),
  },
  {
    area: 'Rollout',
    name: 'setWeight 150',
    expect: /^InvalidSpec: steps\[0\]\.setWeight must be an integer from 0 to 100$/,
    run: () => breakRollout(withSteps([{ setWeight: 150 }]), 'weight'),
  },
  {
    area: 'Rollout',
    name: 'negative pause duration (-5)',
    expect: /^InvalidSpec: steps\[1\]\.pause: invalid pause duration "-5"/,
    run: () => breakRollout(withSteps([{ setWeight: 50 }, { pause: { duration: -5 } }]), 'pause-negative'),
  },
  {
    area: 'Rollout',
    name: 'pause duration that is not a duration ("1e3h")',
    expect: /^InvalidSpec: steps\[1\]\.pause: invalid pause duration "1e3h"/,
    run: () => breakRollout(withSteps([{ setWeight: 50 }, { pause: { duration: '1e3h' } }]), 'pause-junk'),
  },
  {
    area: 'Rollout',
    name: 'replicas -1',
    // Refused by the apiserver already (the scale subresource's replicas must be non-negative).
    expect:
      /^refused by the apiserver: Rollout\.kube-actions\.dev "ro-web" is invalid: \.spec\.replicas: Invalid value: -1: should be a non-negative integer$/,
    run: () => breakRollout((s) => void (s.replicas = -1), 'replicas-negative'),
  },
  {
    area: 'Rollout',
    name: 'int32 extreme: replicas 2147483648',
    expect:
      /^refused by the apiserver: .*\.spec\.replicas: Invalid value: 2147483648: should be less than or equal to 2147483647$/,
    run: () => breakRollout((s) => void (s.replicas = 2147483648), 'replicas-int32'),
  },
  {
    area: 'Rollout',
    name: 'minReadySeconds -1',
    expect: /^InvalidSpec: spec\.minReadySeconds must be a non-negative integer$/,
    run: () => breakRollout((s) => void (s.minReadySeconds = -1), 'min-ready'),
  },
  {
    area: 'Rollout',
    name: 'progressDeadlineSeconds 0',
    expect: /^InvalidSpec: spec\.progressDeadlineSeconds must be a positive integer$/,
    run: () => breakRollout((s) => void (s.progressDeadlineSeconds = 0), 'deadline-zero'),
  },
  {
    area: 'Rollout',
    name: 'both canary and blueGreen',
    expect: /^InvalidSpec: spec\.strategy must set exactly one of canary or blueGreen$/,
    run: () => breakRollout((s) => void (s.strategy!.blueGreen = { activeService: 'ro-stable' }), 'both'),
  },
  {
    area: 'Rollout',
    name: 'missing Service',
    expect: /^InvalidSpec: service "ro-nope" does not exist in namespace chaos-input-[0-9a-f]{6}$/,
    run: () => breakRollout((s) => void (canaryOf(s).stableService = 'ro-nope'), 'service'),
  },
  {
    area: 'Rollout',
    name: 'missing workloadRef Deployment',
    expect: /^InvalidSpec: deployment "ro-nope" \(spec\.workloadRef\) does not exist/,
    run: () =>
      breakRollout((s) => {
        delete s.template;
        s.workloadRef = { apiVersion: 'apps/v1', kind: 'Deployment', name: 'ro-nope' };
      }, 'workload'),
  },
  {
    area: 'Rollout',
    name: 'setCanaryScale without a traffic router',
    expect: /^InvalidSpec: steps\[0\]\.setCanaryScale needs trafficRouting$/,
    run: () => breakRollout(withSteps([{ setCanaryScale: { replicas: 1 } }]), 'scale'),
  },
];

const template = async (name: string, spec: Record<string, unknown>) => {
  await client.create(ANALYSIS_TEMPLATE, {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'AnalysisTemplate',
    metadata: { name, namespace: ns.name },
    spec,
  } as never);
};
const webMetric = (name: string, extra: Partial<Metric> = {}): Metric => ({
  name,
  provider: { web: { url: `${metricBase}/ok`, jsonPath: '{$.ok}' } },
  ...extra,
});
const analysisStep = (...templateNames: string[]) =>
  withSteps([
    { setWeight: 50 },
    { analysis: { templates: templateNames.map((templateName) => ({ templateName })) } },
  ]);

const templateCases: Case[] = [
  {
    area: 'AnalysisTemplate',
    name: 'missing template',
    expect: /^InvalidSpec: analysistemplate "at-nope" does not exist in namespace/,
    run: () => breakRollout(analysisStep('at-nope'), 'at-missing'),
  },
  {
    area: 'AnalysisTemplate',
    name: 'argument nothing supplies',
    expect: /^InvalidSpec: analysis of at-args: args\.service was not resolved$/,
    setup: () => template('at-args', { args: [{ name: 'service' }], metrics: [webMetric('m')] }),
    run: () => breakRollout(analysisStep('at-args'), 'at-args'),
  },
  {
    area: 'AnalysisTemplate',
    name: 'two templates with the same metric name',
    expect: /^InvalidSpec: analysis of at-dup-1, at-dup-2: two metrics have the same name 'latency'$/,
    setup: async () => {
      await template('at-dup-1', { metrics: [webMetric('latency')] });
      await template('at-dup-2', { metrics: [webMetric('latency')] });
    },
    run: () => breakRollout(analysisStep('at-dup-1', 'at-dup-2'), 'at-dup'),
  },
  {
    area: 'AnalysisTemplate',
    name: 'metric interval 0s',
    expect: /^InvalidSpec: analysis of at-interval: metrics\[0\] \(m\): interval must be greater than 0$/,
    setup: () => template('at-interval', { metrics: [webMetric('m', { interval: '0s', count: 3 })] }),
    run: () => breakRollout(analysisStep('at-interval'), 'at-interval'),
  },
  {
    area: 'AnalysisTemplate',
    name: 'template including itself (cycle)',
    expect:
      /^InvalidSpec: analysis of at-cycle: template cycle: AnalysisTemplate\/at-cycle -> AnalysisTemplate\/at-cycle$/,
    setup: () =>
      template('at-cycle', { templates: [{ templateName: 'at-cycle' }], metrics: [webMetric('m')] }),
    run: () => breakRollout(analysisStep('at-cycle'), 'at-cycle'),
  },
];

describe('Rollout and AnalysisTemplate: invalid specs on a healthy rollout, each with a new image', () => {
  beforeAll(async () => {
    await service('ro-stable', RO);
    await service('ro-canary', RO);
    await client.create(ROLLOUT, {
      apiVersion: ROLLOUT.apiVersion,
      kind: 'Rollout',
      metadata: { name: RO, namespace: ns.name },
      spec: roBaseSpec(),
    } as never);
    await eventually(
      'the rollout Healthy with 2 available',
      async () => {
        const ro = await getRollout();
        const rss = await replicaSetsOf(RO);
        return ro.status?.phase === 'Healthy' && rss.length === 1 && rss[0]!.status?.availableReplicas === 2
          ? true
          : undefined;
      },
      60_000,
    );
    // The ReplicaSet's status settles after it became available.
    await sleep(1000);
  }, 90_000);

  corpus(rolloutCases, rolloutWatch);
  corpus(templateCases, rolloutWatch);

  test('afterwards the base spec clears InvalidSpec, and a new image starts a revision (the invariants could see it)', async () => {
    const before = await rolloutWatch.snapshot();
    await client.request('PATCH', `/apis/kube-actions.dev/v1alpha1/namespaces/${ns.name}/rollouts/${RO}`, {
      body: [{ op: 'replace', path: '/spec', value: roBaseSpec() }],
      contentType: PatchType.json,
    });
    await eventually('InvalidSpec cleared', async () => {
      const ro = await getRollout();
      return ro.status?.phase === 'Healthy' && !ro.status.conditions?.some((c) => c.type === 'InvalidSpec')
        ? true
        : undefined;
    });
    expect(rolloutWatch.compare(before, await rolloutWatch.snapshot()).partial).toEqual([]);
    const spec = roBaseSpec();
    spec.template = roTemplate('registry.example/ro-web:2');
    await client.request('PATCH', `/apis/kube-actions.dev/v1alpha1/namespaces/${ns.name}/rollouts/${RO}`, {
      body: [{ op: 'replace', path: '/spec', value: spec }],
      contentType: PatchType.json,
    });
    const after = await eventually('a new revision', async () => {
      const s = await rolloutWatch.snapshot();
      return s.replicaSets.size === 2 ? s : undefined;
    });
    expect(rolloutWatch.compare(before, after).partial.some((p) => p.endsWith('created'))).toBe(true);
    expect(await rolloutPhase(RO, 'Paused')).toMatch(/^Paused: CanaryPauseStep/);
  });
});

// ---- Rollout extremes that are valid: long timers must not become hot loops ------------------------

async function createRollout(name: string, spec: Partial<Rollout['spec']>, image = 1): Promise<void> {
  await client.create(ROLLOUT, {
    apiVersion: ROLLOUT.apiVersion,
    kind: 'Rollout',
    metadata: { name, namespace: ns.name },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: 'main', image: `registry.example/${name}:${image}` }] },
      },
      ...spec,
    },
  } as never);
}

async function rolloutPhase(name: string, phase: string, timeoutMs = 40_000): Promise<string> {
  let last = '';
  try {
    return await eventually(
      `${name} ${phase}`,
      async () => {
        const ro = await getRollout(name);
        last = `${ro.status?.phase}: ${ro.status?.message ?? ''}`;
        return ro.status?.phase === phase ? last : undefined;
      },
      timeoutMs,
    );
  } catch {
    return `(not reported) ${last}`;
  }
}

const image = (name: string, tag: number) => ({
  metadata: { labels: { app: name } },
  spec: { containers: [{ name: 'main', image: `registry.example/${name}:${tag}` }] },
});

// Each starts from a Healthy first revision (which schedules no wake-up at all) and the new
// revision's only wake-up is the long one: the work queue keeps the earliest of a key's wake-ups,
// so an earlier one (the default 600 s progress deadline) would hide a long one that overflows.
const extremeCases: Case[] = [
  {
    area: 'Rollout',
    name: 'a 720h pause (past what a Node timer holds)',
    expect: /^Paused: CanaryPauseStep$/,
    setup: async () => {
      await createRollout('ro-pause', { strategy: { canary: { steps: [{ pause: { duration: '720h' } }] } } });
      await rolloutPhase('ro-pause', 'Healthy');
    },
    run: async () => {
      await client.patch(ROLLOUT, ns.name, 'ro-pause', { spec: { template: image('ro-pause', 2) } });
      return rolloutPhase('ro-pause', 'Paused');
    },
  },
  {
    area: 'Rollout',
    name: 'int32 extremes: progressDeadlineSeconds and minReadySeconds 2147483647',
    expect: /^Progressing: updating to revision \w+$/,
    setup: async () => {
      await createRollout('ro-deadline', { strategy: { canary: { steps: [{ setWeight: 50 }] } } });
      await rolloutPhase('ro-deadline', 'Healthy');
    },
    run: async () => {
      // The new revision's pods never count as available (ready for 68 years first): the rollout
      // waits on its progress deadline, 68 years away, which a timer cannot hold either.
      await client.patch(ROLLOUT, ns.name, 'ro-deadline', {
        spec: {
          template: image('ro-deadline', 2),
          progressDeadlineSeconds: 2147483647,
          minReadySeconds: 2147483647,
        },
      });
      await eventually('the canary pod to be ready (never available)', async () => {
        const rss = await replicaSetsOf('ro-deadline');
        return rss.some((rs) => rs.spec.minReadySeconds === 2147483647 && rs.status?.readyReplicas === 1)
          ? true
          : undefined;
      });
      return rolloutPhase('ro-deadline', 'Progressing');
    },
  },
];

describe('Rollout: valid extremes', () => {
  corpus(extremeCases, noWatch);
});

// ---- AnalysisRun -----------------------------------------------------------------------------------

/** A job metric: a run that measured anyway would leave a Job behind (the partial apply watched). */
const jobMetric = (name: string, extra: Partial<Metric> = {}): Metric => ({
  name,
  provider: {
    job: {
      spec: {
        backoffLimit: 0,
        template: {
          spec: { restartPolicy: 'Never', containers: [{ name: 'm', image: 'registry.example/m:1' }] },
        },
      },
    },
  },
  ...extra,
});

async function runReport(
  name: string,
  metrics: Metric[],
  spec: Partial<AnalysisRun['spec']> = {},
  phases = ['Successful', 'Failed', 'Error', 'Inconclusive'],
): Promise<string> {
  await client.create<AnalysisRun>(ANALYSIS_RUN, {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'AnalysisRun',
    metadata: { name, namespace: ns.name },
    spec: { metrics, ...spec },
  });
  let last = '';
  try {
    return await eventually(
      `${name} to end`,
      async () => {
        const run = await client.get<AnalysisRun>(ANALYSIS_RUN, ns.name, name).catch((err: unknown) => {
          if (isNotFound(err)) return undefined;
          throw err;
        });
        const s = run?.status;
        const measured =
          s?.metricResults?.flatMap((r) => (r.measurements ?? []).map((m) => m.message ?? m.value ?? '')) ??
          [];
        last = `${s?.phase}: ${s?.message ?? ''}${measured.length ? ` [${measured.join('; ')}]` : ''}`;
        return s?.phase && phases.includes(s.phase) ? last : undefined;
      },
      20_000,
    );
  } catch {
    return `(not reported) ${last}`;
  }
}

const jobsWatch: Watched<string[]> = {
  snapshot: async () =>
    (
      await client.request<{ items: { metadata: { name: string } }[] }>(
        'GET',
        `/apis/batch/v1/namespaces/${ns.name}/jobs`,
      )
    ).items.map((j) => j.metadata.name),
  compare: (before, after) => ({
    prunes: before.filter((j) => !after.includes(j)).map((j) => `Job/${j}`),
    partial: after.filter((j) => !before.includes(j)).map((j) => `Job/${j} created`),
    other: [],
  }),
};

/** Errors at the first measurement error: the default (4 in a row, 10 s apart) is too slow here. */
const noRetry = { consecutiveErrorLimit: 0 };

const runCases: Case[] = [
  {
    area: 'AnalysisRun',
    name: 'hostile matches regex ^(a|a)*$ on 10,000 characters',
    expect: /^Failed: /,
    run: () =>
      runReport('ar-regex', [
        {
          name: 'm',
          successCondition: 'result matches "^(a|a)*$"',
          provider: { web: { url: `${metricBase}/long`, jsonPath: '{$.v}' } },
        },
      ]),
  },
  {
    area: 'AnalysisRun',
    name: 'matches over an input past the cap (20,000 characters)',
    expect: /^Error: [\s\S]*matches: input too long/,
    run: () =>
      runReport('ar-regex-long', [
        {
          name: 'm',
          successCondition: 'result matches "^(a|a)*$"',
          provider: { web: { url: `${metricBase}/too-long`, jsonPath: '{$.v}' } },
          ...noRetry,
        },
      ]),
  },
  {
    area: 'AnalysisRun',
    name: 'hostile dryRun metricName regex on a metric name',
    expect: /^Successful/,
    run: () =>
      // The rule matches "aaaa" (dry run) and backtracks, in a JavaScript RegExp, on the other name.
      runReport('ar-dryrun', [webMetric(`${'a'.repeat(27)}!`), webMetric('aaaa')], {
        dryRun: [{ metricName: '^(a|a)*$' }],
      }),
  },
  {
    area: 'AnalysisRun',
    name: 'condition that does not parse ("result >")',
    expect: /^Error: [\s\S]*could not evaluate successCondition "result >"/,
    run: () => runReport('ar-parse', [webMetric('m', { successCondition: 'result >', ...noRetry })]),
  },
  {
    area: 'AnalysisRun',
    name: 'condition nested 100 deep',
    expect: /^Error: [\s\S]*nested too deeply/,
    run: () =>
      runReport('ar-deep', [
        webMetric('m', { successCondition: `${'('.repeat(100)}true${')'.repeat(100)}`, ...noRetry }),
      ]),
  },
  {
    area: 'AnalysisRun',
    name: 'interval 0s',
    expect: /^Error: Analysis spec invalid: metrics\[0\]: interval must be greater than 0/,
    run: () => runReport('ar-interval', [jobMetric('m', { interval: '0s', count: 3 })]),
  },
  {
    area: 'AnalysisRun',
    name: 'count -1',
    expect: /^Error: Analysis spec invalid: metrics\[0\]: count must be >= 0/,
    run: () => runReport('ar-count', [jobMetric('m', { count: -1 })]),
  },
  {
    area: 'AnalysisRun',
    name: 'count that is not an integer ("many")',
    expect: /^Error: Analysis spec invalid: metrics\[0\]: count must be an integer, not "many"/,
    run: () => runReport('ar-count-text', [jobMetric('m', { count: 'many' })]),
  },
  {
    area: 'AnalysisRun',
    name: 'unsupported provider (datadog)',
    expect: /^Error: Analysis spec invalid: metrics\[0\]: provider "datadog" is not supported/,
    run: () => runReport('ar-provider', [{ name: 'm', provider: { datadog: { query: 'avg:x' } } }]),
  },
  {
    area: 'AnalysisRun',
    name: 'missing Secret behind an argument',
    expect: /^Error: Unable to resolve metric arguments: secret "ar-nope" not found/,
    run: () =>
      runReport('ar-secret', [jobMetric('m', { successCondition: 'true' })], {
        args: [{ name: 'token', valueFrom: { secretKeyRef: { name: 'ar-nope', key: 'token' } } }],
      }),
  },
  {
    area: 'AnalysisRun',
    name: 'jsonPath that does not parse',
    expect: /^Error: [\s\S]*(jsonPath|JSONPath|jsonpath)/,
    run: () =>
      runReport('ar-jsonpath', [
        { name: 'm', provider: { web: { url: `${metricBase}/ok`, jsonPath: '{$.[' } }, ...noRetry },
      ]),
  },
  {
    area: 'AnalysisRun',
    name: 'a 720h initialDelay (past what a Node timer holds)',
    expect: /^Running/,
    run: () => runReport('ar-delay', [jobMetric('m', { initialDelay: '720h' })], {}, ['Running']),
  },
];

describe('AnalysisRun: hostile expressions and regexes, invalid metrics', () => {
  corpus(runCases, jobsWatch);
});

// ---- render -------------------------------------------------------------------------------------

/** The workspace's files and sizes: a failed render writes nothing there (or anywhere). */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(`${relative(dir, p)}:${e.isSymbolicLink() ? 'link' : (await stat(p)).size}`);
    }
  };
  await walk(dir);
  return out.sort();
}

/** The render's workspace is root/ws: an input may put files next to it (root/outside). */
let root = '';
const workspace = () => join(root, 'ws');
async function renderCase(path: string): Promise<string> {
  try {
    await render({ workspace: workspace(), path, timeoutMs: 30_000 });
    return 'rendered without error';
  } catch (err) {
    return errorText(err);
  }
}

const renderWatch: Watched<string[]> = {
  snapshot: () => (root ? tree(root) : Promise.resolve([])),
  compare: (before, after) => ({
    prunes: before.filter((f) => !after.includes(f)),
    partial: after.filter((f) => !before.includes(f)).map((f) => `${f} written`),
    other: [],
  }),
};

/** Sets up a fresh workspace holding the case's input (before the fingerprint). */
const renderSetup =
  (files: Record<string, string>, symlinks: Record<string, string> = {}) =>
  async () => {
    root = await mkdtemp(join(tmpdir(), 'bad-input-render-'));
    await mkdir(workspace());
    for (const [p, content] of Object.entries(files)) {
      await mkdir(dirname(join(workspace(), p)), { recursive: true });
      await writeFile(join(workspace(), p), content);
    }
    for (const [p, target] of Object.entries(symlinks)) {
      await mkdir(dirname(join(workspace(), p)), { recursive: true });
      await symlink(target, join(workspace(), p));
    }
  };

/** A billion laughs: 10^8 strings once expanded, from a 300-byte mapping (`indent`ed). */
const bombLines = (indent: string) => {
  let y = `${indent}a0: &a0 "lol"\n`;
  for (let i = 1; i < 9; i++)
    y += `${indent}a${i}: &a${i} [${Array(10)
      .fill(`*a${i - 1}`)
      .join(', ')}]\n`;
  return y;
};
const aliasBomb = () => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n${bombLines('  ')}`;

const CHART = 'apiVersion: v2\nname: web\nversion: 0.1.0\n';
const renderCases: Case[] = [
  {
    area: 'render',
    name: 'kustomization with a path escape (../)',
    expect: /^PathEscapeError: kustomize base "\.\.\/outside" is outside the workspace/,
    setup: renderSetup({
      'app/kustomization.yaml': 'resources:\n  - ../../outside\n',
      '../outside/cm.yaml': cm('x', '1'),
    }),
    run: () => renderCase('app'),
  },
  {
    area: 'render',
    name: 'Helm chart with a template error',
    expect: /^RenderError: helm template failed: [\s\S]*chaos: the template refuses/,
    setup: renderSetup({
      'chart/Chart.yaml': CHART,
      'chart/templates/cm.yaml': '{{ fail "chaos: the template refuses" }}\n',
    }),
    run: () => renderCase('chart'),
  },
  {
    area: 'render',
    name: 'Helm chart rendering invalid YAML',
    // helm parses its own output first: its message names the template.
    expect: /^RenderError: helm template failed: Error: YAML parse error on web\/templates\/cm\.yaml/,
    setup: renderSetup({
      'chart/Chart.yaml': CHART,
      'chart/templates/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n',
    }),
    run: () => renderCase('chart'),
  },
  {
    area: 'render',
    name: 'Chart.yaml whose dependencies are not a list',
    expect: /^RenderError: chart\/Chart\.yaml: dependencies must be a list/,
    setup: renderSetup({
      'chart/Chart.yaml': `${CHART}dependencies: 5\n`,
      'chart/templates/cm.yaml': cm('x', '1'),
    }),
    run: () => renderCase('chart'),
  },
  {
    area: 'render',
    name: 'invalid YAML in a plain directory',
    expect: /^ManifestError: dir\/bad\.yaml:\d+: /,
    setup: renderSetup({ 'dir/bad.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: [\n' }),
    run: () => renderCase('dir'),
  },
  {
    area: 'render',
    name: 'duplicate key in a mapping',
    expect: /^ManifestError: dir\/dupkey\.yaml:\d+: Map keys must be unique$/,
    setup: renderSetup({ 'dir/dupkey.yaml': cm('dupkey', '1', '  name: again\n') }),
    run: () => renderCase('dir'),
  },
  {
    area: 'render',
    name: 'object without metadata.name',
    expect: /^ManifestError: dir\/noname\.yaml:1: ConfigMap object is missing metadata\.name$/,
    setup: renderSetup({ 'dir/noname.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n' }),
    run: () => renderCase('dir'),
  },
  {
    area: 'render',
    name: 'YAML alias bomb in a plain directory',
    expect: /^RenderError: dir\/bomb\.yaml: Excessive alias count indicates a resource exhaustion attack$/,
    setup: () => renderSetup({ 'dir/bomb.yaml': aliasBomb() })(),
    run: () => renderCase('dir'),
  },
  {
    area: 'render',
    name: 'remote kustomize base',
    expect: /^RenderError: remote kustomize bases are disabled/,
    setup: renderSetup({
      'app/kustomization.yaml':
        'resources:\n  - https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.0.0\n',
    }),
    run: () => renderCase('app'),
  },
  {
    area: 'render',
    name: 'source path escape (../..)',
    expect: /^PathEscapeError: source path "\.\.\/\.\." is outside the workspace/,
    setup: renderSetup({ 'dir/cm.yaml': cm('x', '1') }),
    run: () => renderCase('../..'),
  },
];

describe('render: path escapes, template errors, invalid YAML', () => {
  corpus(renderCases, renderWatch, IN_PROCESS);
});

// ---- promote ------------------------------------------------------------------------------------

const gitopsBare = () => join(server.root, 'gitops.git');
interface PromoteSnapshot {
  head: string;
  pushes: number;
}
const promoteWatch: Watched<PromoteSnapshot> = {
  snapshot: async () => ({
    head: await server.revParse('gitops'),
    pushes: server.requests.filter(
      (r) => r.repo === 'gitops' && r.service === 'git-receive-pack' && r.method === 'POST',
    ).length,
  }),
  compare: (before, after) => ({
    prunes: [],
    partial: [
      ...(after.head !== before.head
        ? [`main moved ${before.head.slice(0, 12)} → ${after.head.slice(0, 12)}`]
        : []),
      ...(after.pushes > before.pushes ? [`${after.pushes - before.pushes} push(es)`] : []),
    ],
    other: [],
  }),
};

/** Promotes as the action does: the change from its inputs first, then the push. */
async function promoteCase(change: () => PromoteChange | Promise<PromoteChange>): Promise<string> {
  try {
    const result = await promote({
      repoURL: server.url('gitops'),
      branch: 'main',
      change: await change(),
      message: 'chaos promote',
      maxAttempts: 2,
    });
    return `promoted: changed=${result.changed}`;
  } catch (err) {
    return errorText(err);
  }
}

const kustomizeImage =
  (file: string, image = 'ghcr.io/acme/web:2') =>
  () =>
    changeFromSpec({ workspace: tmpdir(), kustomization: file, image });

const promoteCases: Case[] = [
  {
    area: 'promote',
    name: 'kustomization path escaping the repository',
    expect: /^PathEscapeError: file "\.\.\/\.\.\/\.\.\/etc\/passwd" is outside the workspace/,
    run: () => promoteCase(kustomizeImage('../../../etc/passwd')),
  },
  {
    area: 'promote',
    name: 'manifests path escaping the repository',
    expect: /^PathEscapeError: manifests path "\.\.\/escape" is outside the workspace/,
    run: () =>
      promoteCase(() => ({
        type: 'manifests',
        path: '../escape',
        files: new Map([['cm.yaml', cm('x', '1')]]),
      })),
  },
  {
    area: 'promote',
    name: 'file symlinked out of the repository',
    expect:
      /^PathEscapeError: file "apps\/link\.yaml" is a symlink to \/etc\/hostname, outside the workspace/,
    run: () =>
      promoteCase(() => ({ type: 'yaml-value', file: 'apps/link.yaml', key: 'image.tag', value: '2' })),
  },
  {
    area: 'promote',
    name: 'image reference that is not a reference',
    expect: /^ImageOverrideError: invalid image override "Not An Image!!"/,
    run: () => promoteCase(kustomizeImage('apps/web/kustomization.yaml', 'Not An Image!!')),
  },
  {
    area: 'promote',
    name: 'missing file',
    expect: /^PathEscapeError: file "apps\/nope\/kustomization\.yaml" does not exist in the workspace/,
    run: () => promoteCase(kustomizeImage('apps/nope/kustomization.yaml')),
  },
  {
    area: 'promote',
    name: 'values file that is not valid YAML',
    expect: /^ChangeError: apps\/broken\.yaml is not valid YAML: /,
    run: () =>
      promoteCase(() => ({
        type: 'yaml-value',
        file: 'apps/broken.yaml',
        key: 'image.tag',
        value: '2',
      })),
  },
  {
    area: 'promote',
    name: 'key with an empty segment (image..tag)',
    expect: /^ChangeError: invalid key "image\.\.tag"$/,
    run: () =>
      promoteCase(() => ({
        type: 'yaml-value',
        file: 'apps/web/values.yaml',
        key: 'image..tag',
        value: '2',
      })),
  },
];

describe('promote: escapes, bad references, missing and broken files; nothing pushed', () => {
  beforeAll(async () => {
    await server.createRepo('gitops', { 'README.md': 'gitops\n' });
    await commitTree(
      gitopsBare(),
      'apps',
      {
        'web/kustomization.yaml':
          'resources: [deploy.yaml]\nimages:\n  - name: ghcr.io/acme/web\n    newTag: "1"\n',
        'web/values.yaml': 'image:\n  tag: "1"\n',
        'broken.yaml': 'image: {tag: "1"\n',
      },
      { symlinks: { 'link.yaml': '/etc/hostname' } },
    );
  });

  corpus(promoteCases, promoteWatch, IN_PROCESS);

  test('afterwards a good promotion lands (the invariant could see it)', async () => {
    const before = await promoteWatch.snapshot();
    const outcome = await promoteCase(kustomizeImage('apps/web/kustomization.yaml'));
    expect(outcome).toBe('promoted: changed=true');
    expect(promoteWatch.compare(before, await promoteWatch.snapshot()).partial).toHaveLength(2);
  });
});

test('the corpus has at least 30 rows, every area represented', () => {
  const all = [
    ...applicationCases,
    ...webhookCases,
    ...rolloutCases,
    ...templateCases,
    ...extremeCases,
    ...runCases,
    ...renderCases,
    ...promoteCases,
  ];
  expect(all.length).toBeGreaterThanOrEqual(30);
  expect(new Set(all.map((c) => c.area))).toEqual(
    new Set(['Application', 'webhook', 'Rollout', 'AnalysisTemplate', 'AnalysisRun', 'render', 'promote']),
  );
});
