// Differential conformance with Argo Rollouts (issue 14): the same Rollout specs run under the real
// Argo Rollouts controller (built from its Go module, bench/peers/) and under ours, on the same
// control plane, each in its own namespace. A scenario is a list of actions (create, set image,
// promote, abort, retry), each followed by a checkpoint: a state both controllers must settle in.
// At each checkpoint the two are compared as the user sees them — replica counts per revision,
// Service selectors, the canary Ingress weight, phase, step, pause and abort — with pod-template
// hashes replaced by revision numbers (the two hash templates differently, by design).
//
// Used by test/integration/rollout-conformance.test.ts (a small set, in .ci/run) and by
// bench/peers.ts (more specs; it prints the mismatch count).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import type { KubeClient } from '../../src/core/kube/client.ts';
import { PatchType } from '../../src/core/kube/client.ts';
import { resourcePath, type ResourceRef } from '../../src/core/kube/objects.ts';
import { abortPatches, promotePatches, retryPatches, type Patches } from '../../src/cli/rollout/patches.ts';
import {
  INGRESSES,
  POD_TEMPLATE_HASH,
  REVISION,
  ROLLOUT,
  SERVICES,
  type ReplicaSet,
  type Rollout,
} from '../../src/controller/rollout/types.ts';
import { installCRDs } from './crds.ts';
import { freePort } from './ports.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');

export const ARGO_ROLLOUT: ResourceRef = { ...ROLLOUT, apiVersion: 'argoproj.io/v1alpha1' };

/** Builds Argo Rollouts (cached after the first time); returns the directory with its binary and CRDs. */
export async function argoRolloutsDir(): Promise<string> {
  const { stdout } = await run(join(ROOT, 'bench/peers/build-peers.sh'), ['argo-rollouts'], {
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout.trim().split('\n').at(-1)!;
}

export interface PeerProcess {
  pid: number;
  logs: string[];
  stop(): Promise<void>;
}

/**
 * Argo Rollouts' controller as a process on the host, watching one namespace (`--namespaced`),
 * without leader election, its CRDs applied first. Ready once its healthz answers.
 */
export async function startArgoRollouts(
  kubeconfig: string,
  namespace: string,
  options: { dir?: string; extraArgs?: string[] } = {},
): Promise<PeerProcess> {
  const dir = options.dir ?? (await argoRolloutsDir());
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  await installCRDs(kc, join(dir, 'argo-rollouts-crds'));
  const [metrics, healthz] = await Promise.all([freePort(), freePort()]);
  const child: ChildProcess = spawn(
    join(dir, 'rollouts-controller'),
    [
      `--kubeconfig=${kubeconfig}`,
      '--namespaced',
      `--namespace=${namespace}`,
      '--leader-elect=false',
      `--metricsPort=${metrics}`,
      `--healthzPort=${healthz}`,
      '--loglevel=warn',
      ...(options.extraArgs ?? []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const logs: string[] = [];
  for (const s of [child.stdout!, child.stderr!])
    s.on('data', (d: Buffer) => logs.push(...d.toString().split('\n').filter(Boolean)));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`rollouts-controller exited:\n${logs.slice(-20).join('\n')}`);
    const ok = await fetch(`http://127.0.0.1:${healthz}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { pid: child.pid!, logs, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`rollouts-controller not healthy in 60 s:\n${logs.slice(-20).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

// ---- scenarios ---------------------------------------------------------------------------------

/** What the user sees of a Rollout at a checkpoint, hashes replaced by revision numbers. */
export interface Observation {
  phase: string;
  step: number | null;
  /** Pause condition reasons, sorted; "spec.paused" when the spec is paused. */
  paused: string[];
  abort: boolean;
  stable: string;
  current: string;
  /** spec.replicas of each ReplicaSet the Rollout owns, by revision. */
  replicaSets: Record<string, number>;
  /** Each named Service's selector, as the revision it selects ("-" for none). */
  services: Record<string, string>;
  /** The canary Ingress's weight (nginx), when the spec routes through one. */
  canaryWeight?: string;
}

export type Action =
  | { create: true }
  | { image: string }
  | { promote: true }
  | { promoteFull: true }
  | { abort: true }
  | { retry: true };

export interface Checkpoint {
  /** A name for reports: "v2 paused at step 1". */
  label: string;
  action: Action;
  /** The state both must reach (and then hold for SETTLE_MS) before they are compared. */
  until: (o: Observation) => boolean;
}

export interface Scenario {
  name: string;
  /** spec without selector and template (both are added: app=<name>, image <name>:1). */
  spec: Record<string, unknown>;
  /** Services created before the Rollout, selecting app=<name>. */
  services?: string[];
  /** An nginx Ingress sending host <name>.example to the first Service. */
  ingress?: string;
  checkpoints: Checkpoint[];
}

export const healthy = (o: Observation) => o.phase === 'Healthy';
export const pausedAt = (step: number) => (o: Observation) => o.phase === 'Paused' && o.step === step;
export const degraded = (o: Observation) => o.phase === 'Degraded';
/** Only the current revision has pods left (old ones scaled down after their delay). */
export const onlyCurrent = (o: Observation) =>
  Object.entries(o.replicaSets).every(([rev, n]) => rev === o.current || n === 0);

const both =
  (...fs: ((o: Observation) => boolean)[]) =>
  (o: Observation) =>
    fs.every((f) => f(o));

/** The specs .ci/run compares (the bench adds more): canary by replicas, nginx with abort/retry, blue/green, no steps, a third revision. */
export const CONFORMANCE_SCENARIOS: Scenario[] = [
  {
    name: 'canary-replicas',
    services: ['canary-replicas-stable', 'canary-replicas-canary'],
    spec: {
      replicas: 4,
      strategy: {
        canary: {
          stableService: 'canary-replicas-stable',
          canaryService: 'canary-replicas-canary',
          steps: [
            { setWeight: 25 },
            { pause: {} },
            { setWeight: 50 },
            { pause: { duration: 1 } },
            { setWeight: 75 },
            { pause: {} },
          ],
        },
      },
    },
    checkpoints: [
      { label: 'v1 created', action: { create: true }, until: healthy },
      { label: 'v2 paused at step 1', action: { image: '2' }, until: pausedAt(1) },
      { label: 'promoted: paused at step 5', action: { promote: true }, until: pausedAt(5) },
      { label: 'promoted: v2 stable', action: { promote: true }, until: both(healthy, onlyCurrent) },
    ],
  },
  {
    name: 'canary-nginx',
    services: ['canary-nginx-stable', 'canary-nginx-canary'],
    ingress: 'canary-nginx',
    spec: {
      replicas: 3,
      strategy: {
        canary: {
          stableService: 'canary-nginx-stable',
          canaryService: 'canary-nginx-canary',
          scaleDownDelaySeconds: 2,
          abortScaleDownDelaySeconds: 2,
          trafficRouting: { nginx: { stableIngress: 'canary-nginx' } },
          steps: [{ setWeight: 20 }, { pause: {} }, { setWeight: 60 }, { pause: {} }],
        },
      },
    },
    checkpoints: [
      { label: 'v1 created', action: { create: true }, until: healthy },
      { label: 'v2 paused at step 1', action: { image: '2' }, until: pausedAt(1) },
      { label: 'promoted: paused at step 3', action: { promote: true }, until: pausedAt(3) },
      {
        label: 'aborted: back to stable',
        action: { abort: true },
        until: both(degraded, (o) => o.replicaSets[o.current] === 0),
      },
      { label: 'retried: paused at step 1', action: { retry: true }, until: pausedAt(1) },
      {
        label: 'promoted --full: v2 stable',
        action: { promoteFull: true },
        until: both(healthy, onlyCurrent),
      },
    ],
  },
  {
    name: 'bluegreen',
    services: ['bluegreen-active', 'bluegreen-preview'],
    spec: {
      replicas: 2,
      strategy: {
        blueGreen: {
          activeService: 'bluegreen-active',
          previewService: 'bluegreen-preview',
          autoPromotionEnabled: false,
          scaleDownDelaySeconds: 2,
        },
      },
    },
    checkpoints: [
      { label: 'v1 created', action: { create: true }, until: healthy },
      { label: 'v2 in preview, paused', action: { image: '2' }, until: (o) => o.phase === 'Paused' },
      { label: 'promoted: v2 active', action: { promote: true }, until: both(healthy, onlyCurrent) },
    ],
  },
  {
    name: 'canary-no-steps',
    spec: { replicas: 3, strategy: { canary: {} } },
    checkpoints: [
      { label: 'v1 created', action: { create: true }, until: healthy },
      {
        label: 'v2 stable',
        action: { image: '2' },
        until: both(healthy, onlyCurrent, (o) => o.current === '2'),
      },
    ],
  },
  {
    name: 'canary-third-revision',
    spec: {
      replicas: 4,
      strategy: { canary: { steps: [{ setWeight: 50 }, { pause: {} }] } },
    },
    checkpoints: [
      { label: 'v1 created', action: { create: true }, until: healthy },
      { label: 'v2 paused at step 1', action: { image: '2' }, until: pausedAt(1) },
      {
        label: 'v3 mid-canary: paused at step 1',
        action: { image: '3' },
        until: both(pausedAt(1), (o) => o.current === '3'),
      },
      { label: 'promoted: v3 stable', action: { promote: true }, until: both(healthy, onlyCurrent) },
    ],
  },
];

/** More specs for bench/peers.ts (too slow together for every CI run, but the same comparison). */
export const BENCH_SCENARIOS: Scenario[] = [
  {
    name: 'canary-surge',
    spec: {
      replicas: 5,
      strategy: { canary: { maxSurge: 1, maxUnavailable: 0, steps: [{ setWeight: 40 }, { pause: {} }] } },
    },
    checkpoints: [
      { label: 'v1 created', action: { create: true }, until: healthy },
      { label: 'v2 paused at step 1', action: { image: '2' }, until: pausedAt(1) },
      { label: 'promoted: v2 stable', action: { promote: true }, until: both(healthy, onlyCurrent) },
    ],
  },
  {
    name: 'canary-scale',
    services: ['canary-scale-stable', 'canary-scale-canary'],
    ingress: 'canary-scale',
    spec: {
      replicas: 4,
      strategy: {
        canary: {
          stableService: 'canary-scale-stable',
          canaryService: 'canary-scale-canary',
          scaleDownDelaySeconds: 2,
          trafficRouting: { nginx: { stableIngress: 'canary-scale' } },
          steps: [
            { setCanaryScale: { replicas: 1 } },
            { setWeight: 30 },
            { pause: {} },
            { setCanaryScale: { matchTrafficWeight: true } },
            { setWeight: 60 },
            { pause: {} },
          ],
        },
      },
    },
    checkpoints: [
      { label: 'v1 created', action: { create: true }, until: healthy },
      { label: 'v2 paused at step 2', action: { image: '2' }, until: pausedAt(2) },
      { label: 'promoted: paused at step 5', action: { promote: true }, until: pausedAt(5) },
      { label: 'promoted: v2 stable', action: { promote: true }, until: both(healthy, onlyCurrent) },
    ],
  },
  {
    name: 'bluegreen-preview',
    services: ['bluegreen-preview-active', 'bluegreen-preview-preview'],
    spec: {
      replicas: 3,
      strategy: {
        blueGreen: {
          activeService: 'bluegreen-preview-active',
          previewService: 'bluegreen-preview-preview',
          previewReplicaCount: 1,
          autoPromotionEnabled: false,
          scaleDownDelaySeconds: 2,
          abortScaleDownDelaySeconds: 2,
        },
      },
    },
    checkpoints: [
      { label: 'v1 created', action: { create: true }, until: healthy },
      { label: 'v2 in preview (1 pod), paused', action: { image: '2' }, until: (o) => o.phase === 'Paused' },
      {
        label: 'aborted: active stays v1',
        action: { abort: true },
        until: both(degraded, (o) => o.replicaSets[o.current] === 0),
      },
      { label: 'retried: v2 in preview again', action: { retry: true }, until: (o) => o.phase === 'Paused' },
      { label: 'promoted: v2 active', action: { promote: true }, until: both(healthy, onlyCurrent) },
    ],
  },
];

/** The flavour of Rollout: its API and how its own CLI writes promote/abort/retry. */
export interface Flavour {
  name: string;
  ref: ResourceRef;
  promote(ro: Rollout, full: boolean): Patches;
  abort(ro: Rollout, rss: ReplicaSet[]): Patches;
  retry(ro: Rollout): Patches;
}

/** Ours: the patches `kube-actions rollout promote|abort|retry` write. */
export const OURS: Flavour = {
  name: 'kube-actions',
  ref: ROLLOUT,
  promote: (ro, full) => promotePatches(ro, full),
  abort: (ro, rss) => abortPatches(ro, rss, new Date()),
  retry: (ro) => retryPatches(ro),
};

/** Argo's: the patches `kubectl argo rollouts promote|abort|retry` write (v1.10, pkg/kubectl-argo-rollouts/cmd). */
export const ARGO: Flavour = {
  name: 'Argo Rollouts',
  ref: ARGO_ROLLOUT,
  promote: (ro, full) => {
    const spec = ro.spec.paused ? { spec: { paused: false } } : undefined;
    if (full)
      return {
        ...(spec ? { spec } : {}),
        ...(ro.status?.currentPodHash !== ro.status?.stableRS
          ? { status: { status: { promoteFull: true } } }
          : {}),
        message: 'promoted',
      };
    return {
      ...(spec ? { spec } : {}),
      ...(ro.status?.pauseConditions?.length ? { status: { status: { pauseConditions: null } } } : {}),
      message: 'promoted',
    };
  },
  abort: () => ({ status: { status: { abort: true } }, message: 'aborted' }),
  retry: () => ({ status: { status: { abort: false } }, message: 'retried' }),
};

const SETTLE_MS = 1500;

/** One Rollout of a scenario under one flavour, in one namespace. */
export class Subject {
  readonly flavour: Flavour;
  readonly namespace: string;
  readonly scenario: Scenario;
  private readonly client: KubeClient;

  constructor(client: KubeClient, flavour: Flavour, namespace: string, scenario: Scenario) {
    this.client = client;
    this.flavour = flavour;
    this.namespace = namespace;
    this.scenario = scenario;
  }

  private get name() {
    return this.scenario.name;
  }

  async act(action: Action): Promise<void> {
    const { client, namespace: ns, name } = this;
    if ('create' in action) {
      for (const svc of this.scenario.services ?? [])
        await client.create(SERVICES, {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: svc, namespace: ns },
          spec: { selector: { app: name }, ports: [{ port: 80 }] },
        } as never);
      if (this.scenario.ingress)
        await client.create(INGRESSES, {
          apiVersion: 'networking.k8s.io/v1',
          kind: 'Ingress',
          metadata: { name: this.scenario.ingress, namespace: ns },
          spec: {
            ingressClassName: 'nginx',
            rules: [
              {
                host: `${name}.example`,
                http: {
                  paths: [
                    {
                      path: '/',
                      pathType: 'Prefix',
                      backend: { service: { name: this.scenario.services![0]!, port: { number: 80 } } },
                    },
                  ],
                },
              },
            ],
          },
        } as never);
      await client.create(this.flavour.ref, {
        apiVersion: this.flavour.ref.apiVersion,
        kind: 'Rollout',
        metadata: { name, namespace: ns },
        spec: {
          selector: { matchLabels: { app: name } },
          template: template(name, `registry.example/${name}:1`),
          ...this.scenario.spec,
        },
      } as never);
      return;
    }
    if ('image' in action) {
      await client.patch(this.flavour.ref, ns, name, {
        spec: { template: template(name, `registry.example/${name}:${action.image}`) },
      });
      return;
    }
    const ro = await this.rollout();
    const patches =
      'promote' in action
        ? this.flavour.promote(ro, false)
        : 'promoteFull' in action
          ? this.flavour.promote(ro, true)
          : 'abort' in action
            ? this.flavour.abort(ro, await this.replicaSets())
            : this.flavour.retry(ro);
    // As both CLIs do: the status subresource first, then the spec.
    if (patches.status)
      await client.request('PATCH', resourcePath(this.flavour.ref, ns, name, 'status'), {
        body: patches.status,
        contentType: PatchType.merge,
      });
    if (patches.spec) await client.patch(this.flavour.ref, ns, name, patches.spec);
  }

  private rollout(): Promise<Rollout> {
    return this.client.get<Rollout>(this.flavour.ref, this.namespace, this.name);
  }

  private async replicaSets(): Promise<ReplicaSet[]> {
    const list = await this.client.request<{ items: ReplicaSet[] }>(
      'GET',
      `/apis/apps/v1/namespaces/${this.namespace}/replicasets`,
    );
    return list.items.filter((rs) => rs.metadata.ownerReferences?.some((o) => o.name === this.name));
  }

  /** The observation, and whether every ReplicaSet has the pods its spec asks for (no change under way). */
  async observe(): Promise<{ o: Observation; steady: boolean }> {
    const [ro, rss] = await Promise.all([this.rollout(), this.replicaSets()]);
    const revisionOf = new Map(
      rss.map((rs) => [
        rs.metadata.labels?.[POD_TEMPLATE_HASH] ?? '',
        rs.metadata.annotations?.[REVISION] ?? '?',
      ]),
    );
    const rev = (hash: string | undefined) => (hash ? (revisionOf.get(hash) ?? `unknown`) : '-');
    const s = ro.status ?? {};
    const services: Record<string, string> = {};
    for (const name of this.scenario.services ?? []) {
      const svc = await this.client.get<{ spec?: { selector?: Record<string, string> } } & object>(
        SERVICES,
        this.namespace,
        name,
      );
      services[name] = rev(svc.spec?.selector?.[POD_TEMPLATE_HASH]);
    }
    let canaryWeight: string | undefined;
    if (this.scenario.ingress) {
      const canary = await this.client
        .get<{ metadata: { annotations?: Record<string, string> } }>(
          INGRESSES,
          this.namespace,
          `${this.name}-${this.scenario.ingress}-canary`,
        )
        .catch(() => undefined);
      canaryWeight = canary?.metadata.annotations?.['nginx.ingress.kubernetes.io/canary-weight'] ?? '-';
    }
    const o: Observation = {
      phase: s.phase ?? '',
      step: s.currentStepIndex ?? null,
      paused: [
        ...(ro.spec.paused ? ['spec.paused'] : []),
        ...(s.pauseConditions ?? []).map((p) => p.reason),
      ].sort(),
      abort: Boolean(s.abort),
      stable: rev(s.stableRS),
      current: rev(s.currentPodHash),
      replicaSets: Object.fromEntries(
        rss
          .map((rs) => [rs.metadata.annotations?.[REVISION] ?? '?', rs.spec.replicas ?? 0] as const)
          .sort(([a], [b]) => Number(a) - Number(b)),
      ),
      services,
      ...(canaryWeight !== undefined ? { canaryWeight } : {}),
    };
    const steady = rss.every(
      (rs) =>
        (rs.status?.replicas ?? 0) === (rs.spec.replicas ?? 0) &&
        (rs.status?.availableReplicas ?? 0) === (rs.spec.replicas ?? 0),
    );
    return { o, steady };
  }
}

function template(app: string, image: string) {
  return { metadata: { labels: { app } }, spec: { containers: [{ name: 'main', image }] } };
}

/** One difference at a checkpoint: `field` is a dotted path into Observation. */
export interface Mismatch {
  scenario: string;
  checkpoint: string;
  field: string;
  ours: unknown;
  argo: unknown;
}

/** Field-by-field differences of two observations (flattened one level into records). */
export function differences(
  ours: Observation,
  argo: Observation,
): { field: string; ours: unknown; argo: unknown }[] {
  const out: { field: string; ours: unknown; argo: unknown }[] = [];
  const keys = new Set([...Object.keys(ours), ...Object.keys(argo)]) as Set<keyof Observation>;
  for (const k of keys) {
    const a = ours[k];
    const b = argo[k];
    if (a && b && typeof a === 'object' && !Array.isArray(a)) {
      const inner = new Set([...Object.keys(a), ...Object.keys(b as object)]);
      for (const i of inner) {
        const x = (a as Record<string, unknown>)[i];
        const y = (b as Record<string, unknown>)[i];
        if (JSON.stringify(x) !== JSON.stringify(y)) out.push({ field: `${k}.${i}`, ours: x, argo: y });
      }
    } else if (JSON.stringify(a) !== JSON.stringify(b)) {
      out.push({ field: k, ours: a, argo: b });
    }
  }
  return out;
}

/**
 * Waits until `until` holds for the subject and its observation has not changed for SETTLE_MS with
 * every ReplicaSet steady; returns the last observation and whether it got there in `timeoutMs`.
 */
async function settle(
  subject: Subject,
  until: (o: Observation) => boolean,
  timeoutMs: number,
): Promise<{ o: Observation; reached: boolean }> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  let since = Date.now();
  for (;;) {
    const { o, steady } = await subject.observe();
    const key = JSON.stringify(o);
    if (key !== last) {
      last = key;
      since = Date.now();
    }
    if (until(o) && steady && Date.now() - since >= SETTLE_MS) return { o, reached: true };
    if (Date.now() > deadline) return { o, reached: false };
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface ScenarioResult {
  scenario: string;
  /** Per checkpoint: both observations and whether each reached the checkpoint. */
  checkpoints: {
    label: string;
    ours: Observation;
    argo: Observation;
    reached: { ours: boolean; argo: boolean };
  }[];
  mismatches: Mismatch[];
}

/**
 * Runs a scenario under both controllers side by side (each action is applied to both, then both
 * settle); a checkpoint one of them never reaches is itself a mismatch ("reached").
 */
export async function runScenario(
  client: KubeClient,
  scenario: Scenario,
  namespaces: { ours: string; argo: string },
  timeoutMs = 45_000,
): Promise<ScenarioResult> {
  const ours = new Subject(client, OURS, namespaces.ours, scenario);
  const argo = new Subject(client, ARGO, namespaces.argo, scenario);
  const result: ScenarioResult = { scenario: scenario.name, checkpoints: [], mismatches: [] };
  for (const cp of scenario.checkpoints) {
    await Promise.all([ours.act(cp.action), argo.act(cp.action)]);
    const [a, b] = await Promise.all([settle(ours, cp.until, timeoutMs), settle(argo, cp.until, timeoutMs)]);
    result.checkpoints.push({
      label: cp.label,
      ours: a.o,
      argo: b.o,
      reached: { ours: a.reached, argo: b.reached },
    });
    if (a.reached !== b.reached)
      result.mismatches.push({
        scenario: scenario.name,
        checkpoint: cp.label,
        field: 'reached',
        ours: a.reached,
        argo: b.reached,
      });
    for (const d of differences(a.o, b.o))
      result.mismatches.push({ scenario: scenario.name, checkpoint: cp.label, ...d });
    // Once the two have parted, later checkpoints compare different histories: stop here.
    if (!a.reached || !b.reached) break;
  }
  return result;
}

/** An intended deviation, as the README lists it: scenario, checkpoint ("*" for any), field, reason. */
export interface Deviation {
  scenario: string;
  checkpoint: string;
  field: string;
  reason: string;
}

/**
 * The intended deviations from Argo Rollouts, read from the README's table between the markers
 * `<!-- conformance-deviations -->` and `<!-- /conformance-deviations -->`, so a deviation the test
 * allows is one the README states.
 */
export async function intendedDeviations(): Promise<Deviation[]> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('<!-- conformance-deviations -->');
  const end = readme.indexOf('<!-- /conformance-deviations -->');
  if (start < 0 || end < start) throw new Error('README.md has no conformance-deviations table');
  return readme
    .slice(start, end)
    .split('\n')
    .filter((l) => l.startsWith('|') && !/^\|\s*-/.test(l))
    .slice(1) // the header
    .map((l) => {
      const [scenario, checkpoint, field, reason] = l
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim().replace(/^`|`$/g, ''));
      return { scenario: scenario!, checkpoint: checkpoint!, field: field!, reason: reason! };
    });
}

export function isIntended(m: Mismatch, deviations: Deviation[]): boolean {
  return deviations.some(
    (d) =>
      (d.scenario === '*' || d.scenario === m.scenario) &&
      (d.checkpoint === '*' || d.checkpoint === m.checkpoint) &&
      d.field === m.field,
  );
}
