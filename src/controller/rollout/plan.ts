// What one reconcile of a Rollout sees and what it decides to do, as plain data.
//
// `Observed` is gathered from the caches (gather.ts); `Decision` is the mutable scratchpad the
// pure decide step (decide.ts, canary.ts, bluegreen.ts) writes into: scaling a ReplicaSet here
// changes the desired copy only, so later steps of the same decision see the planned counts,
// exactly as they would see them after a write. `Decision.plan()` turns the scratchpad into the
// list of writes act.ts applies, in a safe order, and the time the rollout wants looking at again.
import { MAX_TIMER_MS } from '../../core/duration.ts';
import type { Rollout, ReplicaSet, RolloutAnalysis, RolloutStatus } from './types.ts';
import { MANAGED_BY, POD_TEMPLATE_HASH, SCALE_DOWN_DEADLINE } from './types.ts';
import type { Ingress, IngressWrite } from './nginx.ts';

/** A Service, as far as a rollout reads it. */
export interface ObservedService {
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  spec?: { selector?: Record<string, string> };
}

/** An AnalysisRun, as far as a rollout reads it. */
export interface ObservedRun {
  name: string;
  /** Owned (as controller) by this rollout. */
  ours: boolean;
  phase?: string;
  message?: string;
  /** spec.terminate is set: it is ending, whatever its phase says yet. */
  terminating: boolean;
}

export interface Observed {
  /** The Rollout as read, workloadRef not yet resolved. */
  rollout: Rollout;
  /** ReplicaSets this rollout controls. */
  replicaSets: ReplicaSet[];
  /** The Services and Ingresses the strategy names, by name; undefined: not found. */
  services: Record<string, ObservedService | undefined>;
  ingresses: Record<string, Ingress | undefined>;
  /** The workloadRef Deployment (undefined: none, or not found). */
  deployment?: { spec: { replicas?: number; selector: { matchLabels?: Record<string, string> } } } & {
    spec: { template: NonNullable<Rollout['spec']['template']> };
  };
  /** AnalysisRuns in the rollout's namespace. */
  runs: ObservedRun[];
  /** References the spec makes that do not exist (templates, Secrets), as messages. */
  missing: string[];
  /** Analyses whose runs could not start or measure (their templates exist), as messages. */
  invalidAnalysis?: string[];
}

export interface RunToCreate {
  name: string;
  analysis: RolloutAnalysis;
  podHash: string;
}

export interface ReplicaSetWrite {
  name: string;
  /** Desired spec.replicas, when it changes. */
  replicas?: number;
  /** The scale-down deadline annotation: a time to set, null to remove, undefined to leave. */
  deadline?: string | null;
}

export interface RolloutEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/** The writes one reconcile makes; act.ts applies them in this order of concern. */
export interface Plan {
  createReplicaSet?: ReplicaSet;
  /** Scale-ups and cancelled scale-downs: applied before traffic moves. */
  scaleUps: ReplicaSetWrite[];
  /** Service selectors to point at a revision (hash). */
  services: { name: string; hash: string }[];
  /** Canary Ingresses to create or update. */
  ingresses: IngressWrite[];
  /** Scale-downs and new scale-down deadlines: applied after traffic moved. */
  scaleDowns: ReplicaSetWrite[];
  deleteReplicaSets: string[];
  /** The workloadRef Deployment's new replicas (scaled down as the rollout takes over). */
  workloadReplicas?: number;
  createRuns: RunToCreate[];
  terminateRuns: string[];
  /** The status to write; undefined when it did not change. */
  status?: RolloutStatus;
  events: RolloutEvent[];
  /** Look again after this many ms (undefined: only when something changes). */
  requeueAfter?: number;
}

/** Node's timers fire at once for delays over 2^31-1 ms; a longer wait is re-evaluated then. */
export const MAX_REQUEUE_MS = MAX_TIMER_MS;

const COMPLETED = new Set(['Successful', 'Failed', 'Error', 'Inconclusive']);
export const runCompleted = (phase: string | undefined): boolean => COMPLETED.has(phase ?? '');

export interface AnalysisOutcome {
  name: string;
  phase: 'Pending' | 'Running' | 'Successful' | 'Failed' | 'Error' | 'Inconclusive';
  message?: string;
}

/** The scratchpad of one decision. Holds no API client: everything it needs is in `observed`. */
export class Decision {
  readonly observed: Observed;
  readonly now: Date;
  /** The rollout with its workloadRef resolved (the template and selector in force). */
  readonly ro: Rollout;
  readonly status: RolloutStatus;
  readonly replicas: number;
  /** Desired copies of the observed ReplicaSets (and the one to create), in observed order. */
  readonly rss: ReplicaSet[];
  newRS!: ReplicaSet;
  stableRS: ReplicaSet | undefined;
  private readonly original = new Map<string, ReplicaSet>();
  private created?: ReplicaSet;
  private readonly serviceWrites = new Map<string, string>();
  private ingressWrites: IngressWrite[] = [];
  private readonly deletes = new Set<string>();
  private readonly runsToCreate: RunToCreate[] = [];
  private readonly runsToTerminate = new Set<string>();
  private readonly eventList: RolloutEvent[] = [];
  private readonly wakes: number[] = [];
  workloadReplicas?: number;

  constructor(observed: Observed, ro: Rollout, now: Date) {
    this.observed = observed;
    this.ro = ro;
    this.now = now;
    this.status = structuredClone(observed.rollout.status ?? {});
    this.replicas = ro.spec.replicas ?? 1;
    for (const rs of observed.replicaSets) this.original.set(rs.metadata.name, rs);
    this.rss = observed.replicaSets.map((rs) => structuredClone(rs));
  }

  hashOf(rs: ReplicaSet): string | undefined {
    return rs.metadata.labels?.[POD_TEMPLATE_HASH];
  }

  byHash(hash: string | undefined): ReplicaSet | undefined {
    return hash === undefined ? undefined : this.rss.find((rs) => this.hashOf(rs) === hash);
  }

  /** A ReplicaSet the decision needs that does not exist yet: act creates it first. */
  create(rs: ReplicaSet): ReplicaSet {
    this.created = rs;
    this.rss.push(rs);
    return rs;
  }

  isCreated(rs: ReplicaSet): boolean {
    return rs === this.created;
  }

  scale(rs: ReplicaSet, replicas: number): void {
    rs.spec.replicas = replicas;
    // Scaling an old revision up cancels its pending scale-down.
    if (replicas > 0 && rs.metadata.annotations?.[SCALE_DOWN_DEADLINE]) {
      const { [SCALE_DOWN_DEADLINE]: _dropped, ...rest } = rs.metadata.annotations;
      rs.metadata.annotations = rest;
    }
  }

  /** Scales `rs` to 0 once `delaySeconds` have passed since this was first asked (an annotated deadline). */
  scaleDownAfter(rs: ReplicaSet, delaySeconds: number): void {
    if ((rs.spec.replicas ?? 0) === 0) return;
    const deadline = rs.metadata.annotations?.[SCALE_DOWN_DEADLINE];
    // A deadline set earlier stands: its pods were promised that long to drain.
    if (!deadline && delaySeconds <= 0) return this.scale(rs, 0);
    if (!deadline) {
      const at = new Date(this.now.getTime() + delaySeconds * 1000).toISOString();
      rs.metadata.annotations = { ...rs.metadata.annotations, [SCALE_DOWN_DEADLINE]: at };
      this.wake(Date.parse(at));
      return;
    }
    if (this.now.getTime() >= Date.parse(deadline)) {
      this.scale(rs, 0);
      const { [SCALE_DOWN_DEADLINE]: _done, ...rest } = rs.metadata.annotations!;
      rs.metadata.annotations = rest;
      return;
    }
    this.wake(Date.parse(deadline));
  }

  /** Every ReplicaSet but `keep` goes to 0 after `delaySeconds`. */
  scaleDownOthers(keep: ReplicaSet[], delaySeconds: number): void {
    for (const rs of this.rss) if (!keep.includes(rs)) this.scaleDownAfter(rs, delaySeconds);
  }

  deleteReplicaSet(rs: ReplicaSet): void {
    this.deletes.add(rs.metadata.name);
  }

  /** Points each named Service's selector at a revision (adds the pod-template-hash key). */
  pointServices(names: (string | undefined)[], hash: string): void {
    for (const name of names) {
      if (!name) continue;
      const svc = this.observed.services[name];
      if (!svc) throw new Error(`service ${this.ro.metadata.namespace}/${name} does not exist`);
      const already =
        svc.spec?.selector?.[POD_TEMPLATE_HASH] === hash &&
        svc.metadata.annotations?.[MANAGED_BY] === this.ro.metadata.name;
      if (already) this.serviceWrites.delete(name);
      else this.serviceWrites.set(name, hash);
    }
  }

  /** The revision a Service will select after this decision. */
  serviceHash(name: string): string | undefined {
    return this.serviceWrites.get(name) ?? this.observed.services[name]?.spec?.selector?.[POD_TEMPLATE_HASH];
  }

  setIngresses(ingresses: IngressWrite[]): void {
    this.ingressWrites = ingresses;
  }

  /**
   * The run for an analysis slot: the one recorded in status, else one of ours for this slot still
   * measuring (started by a reconcile whose status write was lost), else a new one with the first
   * free name (`<slot>`, `<slot>.1`, …), which act creates.
   */
  analysis(slot: string, analysis: RolloutAnalysis, recorded: string | undefined): AnalysisOutcome {
    const base = slot.slice(0, 240);
    const forSlot = (name: string) =>
      name === base || (name.startsWith(`${base}.`) && /^\d+$/.test(name.slice(base.length + 1)));
    const outcomeOf = (run: ObservedRun): AnalysisOutcome => ({
      name: run.name,
      phase: (run.phase as AnalysisOutcome['phase'] | undefined) ?? 'Pending',
      ...(run.message ? { message: run.message } : {}),
    });
    const planned = this.runsToCreate.find((r) => r.name === recorded || forSlot(r.name));
    if (planned) return { name: planned.name, phase: 'Pending' };
    if (recorded && forSlot(recorded)) {
      const run = this.observed.runs.find((r) => r.name === recorded && r.ours);
      if (run) return outcomeOf(run);
    }
    const live = this.observed.runs.filter(
      (r) => r.ours && forSlot(r.name) && !runCompleted(r.phase) && !r.terminating,
    );
    if (live.length) return outcomeOf(live[live.length - 1]!);
    const taken = new Set(this.observed.runs.map((r) => r.name));
    let name = base;
    for (let n = 1; taken.has(name); n++) name = `${base}.${n}`;
    this.runsToCreate.push({ name, analysis, podHash: this.status.currentPodHash! });
    return { name, phase: 'Pending' };
  }

  terminateRun(name: string): void {
    const planned = this.runsToCreate.findIndex((r) => r.name === name);
    if (planned >= 0) {
      this.runsToCreate.splice(planned, 1);
      return;
    }
    const run = this.observed.runs.find((r) => r.name === name);
    if (run && !run.terminating && !runCompleted(run.phase)) this.runsToTerminate.add(name);
  }

  event(type: RolloutEvent['type'], reason: string, message: string): void {
    this.eventList.push({ type, reason, message });
  }

  /** Asks to be looked at again at `at` (epoch ms); the earliest wish wins. */
  wake(at: number): void {
    this.wakes.push(at);
  }

  plan(statusChanged: boolean): Plan {
    const scaleUps: ReplicaSetWrite[] = [];
    const scaleDowns: ReplicaSetWrite[] = [];
    for (const rs of this.rss) {
      if (rs === this.created || this.deletes.has(rs.metadata.name)) continue;
      const before = this.original.get(rs.metadata.name)!;
      const write: ReplicaSetWrite = { name: rs.metadata.name };
      const was = before.spec.replicas ?? 0;
      const want = rs.spec.replicas ?? 0;
      if (want !== was) write.replicas = want;
      const deadlineBefore = before.metadata.annotations?.[SCALE_DOWN_DEADLINE];
      const deadlineAfter = rs.metadata.annotations?.[SCALE_DOWN_DEADLINE];
      if (deadlineAfter !== deadlineBefore) write.deadline = deadlineAfter ?? null;
      if (write.replicas === undefined && write.deadline === undefined) continue;
      if (want > was || (write.deadline === null && want > 0)) scaleUps.push(write);
      else scaleDowns.push(write);
    }
    const now = this.now.getTime();
    const future = this.wakes.filter((t) => t > now);
    const requeueAfter = future.length
      ? Math.min(MAX_REQUEUE_MS, Math.max(1, Math.min(...future) - now))
      : undefined;
    return {
      ...(this.created ? { createReplicaSet: this.created } : {}),
      scaleUps,
      services: [...this.serviceWrites].map(([name, hash]) => ({ name, hash })),
      ingresses: this.ingressWrites,
      scaleDowns,
      deleteReplicaSets: [...this.deletes],
      ...(this.workloadReplicas !== undefined ? { workloadReplicas: this.workloadReplicas } : {}),
      createRuns: [...this.runsToCreate],
      terminateRuns: [...this.runsToTerminate],
      ...(statusChanged ? { status: this.status } : {}),
      events: [...this.eventList],
      ...(requeueAfter !== undefined ? { requeueAfter } : {}),
    };
  }
}
