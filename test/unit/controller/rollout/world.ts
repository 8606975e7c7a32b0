// A tiny model of the cluster for the Rollout decision's unit tests: it feeds decide() what the
// caches would hold, applies the plan it returns the way the apiserver would (ReplicaSet
// replicas and annotations, Service selectors, Ingresses, runs, status), and lets a test make
// pods available, finish analysis runs and move a fake clock. No API, no timers.
import { decide } from '../../../../src/controller/rollout/decide.ts';
import { canaryIngressName, type Ingress } from '../../../../src/controller/rollout/nginx.ts';
import type {
  Observed,
  ObservedRun,
  ObservedService,
  Plan,
} from '../../../../src/controller/rollout/plan.ts';
import { podTemplateHash } from '../../../../src/controller/rollout/replicas.ts';
import {
  POD_TEMPLATE_HASH,
  SCALE_DOWN_DEADLINE,
  type ReplicaSet,
  type Rollout,
} from '../../../../src/controller/rollout/types.ts';

export const template = (image: string) => ({
  metadata: { labels: { app: 'web' } },
  spec: { containers: [{ name: 'main', image }] },
});

export const hashOf = (image: string): string => podTemplateHash(template(image));

export class World {
  now = Date.parse('2026-12-01T00:00:00Z');
  ro: Rollout;
  rss: ReplicaSet[] = [];
  services: Record<string, ObservedService | undefined> = {};
  ingresses: Record<string, Ingress | undefined> = {};
  runs: ObservedRun[] = [];
  missing: string[] = [];
  deployment?: Observed['deployment'];
  /** Every plan decided, in order. */
  plans: Plan[] = [];
  private rv = 1;

  constructor(spec: Partial<Rollout['spec']>, image = 'web:1') {
    this.ro = {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Rollout',
      metadata: { name: 'web', namespace: 'ns', uid: 'uid-web', generation: 1, resourceVersion: '1' },
      spec: { replicas: 4, selector: { matchLabels: { app: 'web' } }, template: template(image), ...spec },
    };
  }

  service(...names: string[]): this {
    for (const name of names)
      this.services[name] = { metadata: { name, namespace: 'ns' }, spec: { selector: { app: 'web' } } };
    return this;
  }

  observed(): Observed {
    return structuredClone({
      rollout: this.ro,
      replicaSets: this.rss,
      services: this.services,
      ingresses: this.ingresses,
      ...(this.deployment ? { deployment: this.deployment } : {}),
      runs: this.runs,
      missing: this.missing,
    });
  }

  /** One reconcile: decide on what the caches hold, then apply the plan as the apiserver would. */
  reconcile(): Plan {
    const plan = decide(this.observed(), new Date(this.now));
    this.plans.push(plan);
    this.apply(plan);
    return plan;
  }

  /** Reconciles, making every pod available in between, until a reconcile changes nothing. */
  settle(max = 30): Plan {
    let plan = this.reconcile();
    for (let i = 0; i < max; i++) {
      this.ready();
      const next = this.reconcile();
      if (!writes(next)) return next;
      plan = next;
    }
    throw new Error(`did not settle in ${max} reconciles; last plan ${JSON.stringify(plan)}`);
  }

  /** All pods of every ReplicaSet come up (and the ones scaled away go). */
  ready(): void {
    for (const rs of this.rss) {
      const n = rs.spec.replicas ?? 0;
      rs.status = { replicas: n, readyReplicas: n, availableReplicas: n };
    }
  }

  advance(ms: number): void {
    this.now += ms;
  }

  setImage(image: string): string {
    this.ro = { ...this.ro, spec: { ...this.ro.spec, template: template(image) } };
    this.ro.metadata = { ...this.ro.metadata, generation: (this.ro.metadata.generation ?? 1) + 1 };
    return hashOf(image);
  }

  /** What the CLI does: edit status (promote, abort, retry, promote --full). */
  editStatus(patch: Record<string, unknown>): void {
    const status: Record<string, unknown> = { ...this.ro.status };
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) delete status[k];
      else status[k] = v;
    }
    this.ro = { ...this.ro, status: status };
    this.bump();
  }

  finishRun(name: string, phase: 'Successful' | 'Failed' | 'Error' | 'Inconclusive', message?: string): void {
    const run = this.runs.find((r) => r.name === name);
    if (!run) throw new Error(`no run ${name}; runs: ${this.runs.map((r) => r.name).join(', ')}`);
    run.phase = phase;
    if (message) run.message = message;
  }

  counts(): Record<string, number> {
    return Object.fromEntries(
      this.rss.map((rs) => [rs.metadata.labels![POD_TEMPLATE_HASH]!, rs.spec.replicas ?? 0]),
    );
  }

  rs(hash: string): ReplicaSet | undefined {
    return this.rss.find((rs) => rs.metadata.labels?.[POD_TEMPLATE_HASH] === hash);
  }

  selector(service: string): string | undefined {
    return this.services[service]?.spec?.selector?.[POD_TEMPLATE_HASH];
  }

  canaryWeight(stableIngress: string): string | undefined {
    return this.ingresses[canaryIngressName('web', stableIngress)]?.metadata.annotations?.[
      'nginx.ingress.kubernetes.io/canary-weight'
    ];
  }

  private bump(): void {
    this.ro.metadata = { ...this.ro.metadata, resourceVersion: String(++this.rv) };
  }

  private apply(plan: Plan): void {
    if (plan.createReplicaSet) {
      if (this.rss.some((rs) => rs.metadata.name === plan.createReplicaSet!.metadata.name))
        throw new Error(`created ${plan.createReplicaSet.metadata.name} twice`);
      this.rss.push({ ...structuredClone(plan.createReplicaSet), status: {} });
    }
    for (const write of [...plan.scaleUps, ...plan.scaleDowns]) {
      const rs = this.rss.find((r) => r.metadata.name === write.name)!;
      if (write.replicas !== undefined) rs.spec.replicas = write.replicas;
      if (write.deadline === null) {
        const { [SCALE_DOWN_DEADLINE]: _gone, ...rest } = rs.metadata.annotations ?? {};
        rs.metadata.annotations = rest;
      } else if (write.deadline !== undefined) {
        rs.metadata.annotations = { ...rs.metadata.annotations, [SCALE_DOWN_DEADLINE]: write.deadline };
      }
    }
    for (const { name, hash } of plan.services) {
      const svc = this.services[name]!;
      svc.spec = { selector: { ...svc.spec?.selector, [POD_TEMPLATE_HASH]: hash } };
      svc.metadata.annotations = { 'argo-rollouts.argoproj.io/managed-by-rollouts': 'web' };
    }
    for (const write of plan.ingresses)
      this.ingresses[write.desired.metadata.name] = structuredClone(write.desired);
    this.rss = this.rss.filter((rs) => !plan.deleteReplicaSets.includes(rs.metadata.name));
    if (plan.workloadReplicas !== undefined && this.deployment)
      this.deployment.spec.replicas = plan.workloadReplicas;
    for (const run of plan.createRuns) {
      if (this.runs.some((r) => r.name === run.name)) throw new Error(`run ${run.name} created twice`);
      this.runs.push({ name: run.name, ours: true, terminating: false });
    }
    for (const name of plan.terminateRuns) this.runs.find((r) => r.name === name)!.terminating = true;
    if (plan.status) {
      this.ro = { ...this.ro, status: structuredClone(plan.status) };
      this.bump();
    }
  }
}

export function writes(plan: Plan): boolean {
  return Boolean(
    plan.createReplicaSet ||
    plan.scaleUps.length ||
    plan.scaleDowns.length ||
    plan.services.length ||
    plan.ingresses.length ||
    plan.deleteReplicaSets.length ||
    plan.workloadReplicas !== undefined ||
    plan.createRuns.length ||
    plan.terminateRuns.length ||
    plan.status,
  );
}
