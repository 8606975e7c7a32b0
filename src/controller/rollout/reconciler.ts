// The Rollout reconciler (Argo Rollouts semantics): one ReplicaSet per pod-template revision,
// owned by the Rollout; canary steps (setWeight, pause, analysis, setCanaryScale) with weights from
// replica counts or an nginx canary Ingress; blue/green with preview and active Services; abort,
// promote, retry. Every decision is read from and written to the Rollout's status and annotations,
// so a restarted controller resumes mid-rollout; timed events (pause expiry, scale-down deadlines)
// are precise requeues, not polling.
import { stableJSON } from '../../core/json.ts';
import type { KubeClient } from '../../core/kube/client.ts';
import { isConflict, isNotFound, PatchType } from '../../core/kube/client.ts';
import type { Request } from '../../core/kube/objects.ts';
import { resourcePath } from '../../core/kube/objects.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Logger } from '../runtime/log.ts';
import { syncCanaryIngress } from './nginx.ts';
import {
  canaryCounts,
  pauseDurationMs,
  podTemplateHash,
  resolveIntOrPercent,
  validateSteps,
  weightAt,
} from './replicas.ts';
import {
  DEPLOYMENTS,
  INGRESSES,
  MANAGED_BY,
  POD_TEMPLATE_HASH,
  REPLICASETS,
  REVISION,
  ROLLOUT,
  SCALE_DOWN_DEADLINE,
  SERVICES,
  SOURCE_TEMPLATE,
  type Deployment,
  type PauseReason,
  type ReplicaSet,
  type Rollout,
  type RolloutAnalysis,
  type RolloutCondition,
  type RolloutStatus,
} from './types.ts';

/** What the analysis controller reports for a run the rollout asked for. */
export interface AnalysisOutcome {
  name: string;
  phase: 'Pending' | 'Running' | 'Successful' | 'Failed' | 'Error' | 'Inconclusive';
  message?: string;
}

/** Starts (idempotently, by name) and reads AnalysisRuns for a rollout. */
export interface AnalysisDriver {
  /** `recorded` is the run this slot used last (from status): read it rather than start another. */
  ensure(
    rollout: Rollout,
    name: string,
    analysis: RolloutAnalysis,
    podHash: string,
    recorded?: string,
  ): Promise<AnalysisOutcome>;
  terminate(rollout: Rollout, name: string): Promise<void>;
}

export interface RolloutReconcilerOptions {
  client: KubeClient;
  getRollout: (req: Request) => Promise<Rollout | undefined>;
  /** The ReplicaSets in a namespace (the controller's informer cache). */
  listReplicaSets: (namespace: string) => Promise<ReplicaSet[]>;
  analysis?: AnalysisDriver;
  events?: EventRecorder;
  logger: Logger;
  now?: () => Date;
}

export interface ReconcileResult {
  requeueAfter?: number;
}

interface Context {
  ro: Rollout;
  now: Date;
  status: RolloutStatus;
  replicas: number;
  rss: ReplicaSet[];
  newRS: ReplicaSet;
  stableRS: ReplicaSet | undefined;
  /** Requeue wishes; the earliest wins. */
  wake: number[];
}

const DEFAULT_SCALE_DOWN_DELAY = 30;

export class RolloutReconciler {
  private readonly o: RolloutReconcilerOptions;

  constructor(options: RolloutReconcilerOptions) {
    this.o = options;
  }

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  async reconcile(req: Request): Promise<ReconcileResult> {
    const given = await this.o.getRollout(req);
    if (!given || (given.metadata as { deletionTimestamp?: string }).deletionTimestamp) return {};
    const now = this.now();
    const previous: RolloutStatus = structuredClone(given.status ?? {});
    const status: RolloutStatus = structuredClone(previous);

    // workloadRef: the pod template (and, by default, the selector) come from a Deployment.
    const { rollout: ro, problems: refProblems } = await this.resolveWorkload(given);
    const invalid = [...refProblems, ...(refProblems.length ? [] : this.validate(ro))];
    if (invalid.length === 0) invalid.push(...(await this.missingReferences(ro)));
    if (invalid.length) {
      status.phase = 'Degraded';
      status.message = `InvalidSpec: ${invalid.join('; ')}`;
      setCondition(status, now, {
        type: 'InvalidSpec',
        status: 'True',
        reason: 'InvalidSpec',
        message: invalid.join('; '),
      });
      await this.writeStatus(ro, previous, status);
      return {};
    }
    removeCondition(status, 'InvalidSpec');

    const template = ro.spec.template!;
    const hash = podTemplateHash(template);
    let rss = (await this.o.listReplicaSets(ro.metadata.namespace)).filter((rs) =>
      rs.metadata.ownerReferences?.some((o) => o.uid === ro.metadata.uid && o.controller),
    );
    const replicas = ro.spec.replicas ?? 1;
    let newRS = rss.find((rs) => rs.metadata.labels?.[POD_TEMPLATE_HASH] === hash);
    const firstRollout = !status.stableRS;
    if (!newRS) {
      newRS = await this.createReplicaSet(ro, hash, rss, firstRollout ? replicas : 0);
      rss = [...rss, newRS];
    }
    if (status.currentPodHash !== hash) {
      // A new revision: its steps start from the beginning. (Back to the stable revision is an
      // immediate "rollback": nothing to step through.)
      status.currentPodHash = hash;
      status.currentStepIndex = 0;
      delete status.pauseConditions;
      delete status.controllerPause;
      delete status.promoteFull;
      delete status.abort;
      delete status.abortedAt;
      status.progressStartedAt = now.toISOString();
      if (status.blueGreen) {
        delete status.blueGreen.scaleUpPreviewCheckPoint;
        delete status.blueGreen.prePromotionAnalysisRunStatus;
        delete status.blueGreen.postPromotionAnalysisRunStatus;
      }
      if (status.canary) {
        delete status.canary.currentStepAnalysisRunStatus;
        delete status.canary.currentBackgroundAnalysisRunStatus;
      }
      removeCondition(status, 'Progressing');
    }
    if (firstRollout) status.stableRS = hash;
    const stableRS = rss.find((rs) => rs.metadata.labels?.[POD_TEMPLATE_HASH] === status.stableRS);
    const ctx: Context = { ro, now, status, replicas, rss, newRS, stableRS, wake: [] };

    if (ro.spec.strategy?.blueGreen) await this.blueGreen(ctx);
    else await this.canary(ctx);

    await this.cleanupOldReplicaSets(ctx);
    this.summarize(ctx);
    await this.scaleDownWorkload(ctx);
    try {
      await this.writeStatus(ro, previous, status);
    } catch (err) {
      // The Rollout changed since it was read (a stale cache, or a promote/abort just now): read
      // it again soon rather than overwrite. Every step above is idempotent.
      const code = (err as { code?: number }).code;
      if (code === 409 || code === 422) return { requeueAfter: 200 };
      throw err;
    }
    const next = ctx.wake.filter((t) => t > now.getTime());
    return next.length ? { requeueAfter: Math.max(50, Math.min(...next) - now.getTime()) } : {};
  }

  // ---- validation ---------------------------------------------------------------------------

  private validate(ro: Rollout): string[] {
    const problems: string[] = [];
    const { canary, blueGreen } = ro.spec.strategy ?? {};
    if (!ro.spec.template) problems.push('spec.template (or spec.workloadRef) is required');
    if (!canary === !blueGreen) problems.push('spec.strategy must set exactly one of canary or blueGreen');
    const matchLabels = ro.spec.selector?.matchLabels ?? {};
    if (Object.keys(matchLabels).length === 0)
      problems.push('spec.selector.matchLabels must select the pods');
    const labels = ro.spec.template?.metadata?.labels ?? {};
    for (const [k, v] of Object.entries(matchLabels)) {
      if (labels[k] !== v)
        problems.push(`spec.selector.matchLabels ${k}=${v} does not match spec.template.metadata.labels`);
    }
    if (blueGreen && !blueGreen.activeService) problems.push('strategy.blueGreen.activeService is required');
    if (blueGreen?.previewService && blueGreen.previewService === blueGreen.activeService) {
      problems.push('strategy.blueGreen.previewService must differ from activeService');
    }
    if (canary) {
      const router = canary.trafficRouting;
      const others = Object.keys(router ?? {}).filter((k) => k !== 'nginx' && k !== 'maxTrafficWeight');
      if (others.length)
        problems.push(`strategy.canary.trafficRouting: only nginx is supported (got ${others.join(', ')})`);
      if (router?.nginx) {
        if (!canary.canaryService || !canary.stableService)
          problems.push('strategy.canary.trafficRouting needs canaryService and stableService');
        if (!router.nginx.stableIngress)
          problems.push('strategy.canary.trafficRouting.nginx.stableIngress is required');
      }
      if (canary.canaryService && canary.canaryService === canary.stableService) {
        problems.push('strategy.canary.canaryService must differ from stableService');
      }
      problems.push(...validateSteps(canary.steps ?? [], Boolean(router?.nginx)));
    }
    return problems;
  }

  /** The rollout with the template and selector of its workloadRef's Deployment filled in. */
  private async resolveWorkload(ro: Rollout): Promise<{ rollout: Rollout; problems: string[] }> {
    const ref = ro.spec.workloadRef;
    if (!ref) return { rollout: ro, problems: [] };
    if (ro.spec.template)
      return { rollout: ro, problems: ['set either spec.template or spec.workloadRef, not both'] };
    if (ref.kind !== 'Deployment' || (ref.apiVersion ?? 'apps/v1') !== 'apps/v1') {
      return {
        rollout: ro,
        problems: [
          `spec.workloadRef must reference an apps/v1 Deployment, got ${ref.apiVersion} ${ref.kind}`,
        ],
      };
    }
    const scaleDown = ref.scaleDown ?? 'never';
    if (!['never', 'onsuccess', 'progressively'].includes(scaleDown)) {
      return {
        rollout: ro,
        problems: [
          `spec.workloadRef.scaleDown must be never, onsuccess or progressively, got "${scaleDown}"`,
        ],
      };
    }
    let deployment: Deployment;
    try {
      deployment = await this.o.client.get<Deployment>(DEPLOYMENTS, ro.metadata.namespace, ref.name);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      return {
        rollout: ro,
        problems: [
          `deployment "${ref.name}" (spec.workloadRef) does not exist in namespace ${ro.metadata.namespace}`,
        ],
      };
    }
    const spec = {
      ...ro.spec,
      template: deployment.spec.template,
      selector: ro.spec.selector?.matchLabels ? ro.spec.selector : deployment.spec.selector,
    };
    return { rollout: { ...ro, spec }, problems: [] };
  }

  /**
   * workloadRef's scaleDown: `onsuccess` scales the Deployment to 0 once the rollout is Healthy,
   * `progressively` by as many pods as the rollout has available; `never` leaves it alone.
   */
  private async scaleDownWorkload(ctx: Context): Promise<void> {
    const ref = ctx.ro.spec.workloadRef;
    const mode = ref?.scaleDown ?? 'never';
    if (!ref || mode === 'never') return;
    const deployment = await this.o.client.get<Deployment>(DEPLOYMENTS, ctx.ro.metadata.namespace, ref.name);
    const want =
      mode === 'onsuccess'
        ? ctx.status.phase === 'Healthy'
          ? 0
          : (deployment.spec.replicas ?? 1)
        : Math.max(0, ctx.replicas - (ctx.status.availableReplicas ?? 0));
    if (want < (deployment.spec.replicas ?? 1)) {
      await this.o.client.patch(
        DEPLOYMENTS,
        ctx.ro.metadata.namespace,
        ref.name,
        { spec: { replicas: want } },
        PatchType.merge,
      );
    }
  }

  /** Services and Ingresses the strategy names must exist (Argo's InvalidSpec, not a crash loop). */
  private async missingReferences(ro: Rollout): Promise<string[]> {
    const { canary, blueGreen } = ro.spec.strategy ?? {};
    const services = [
      canary?.stableService,
      canary?.canaryService,
      blueGreen?.activeService,
      blueGreen?.previewService,
    ];
    const ingresses = [
      canary?.trafficRouting?.nginx?.stableIngress,
      ...(canary?.trafficRouting?.nginx?.stableIngresses ?? []),
    ];
    const problems: string[] = [];
    const check = async (ref: typeof SERVICES, kind: string, name: string | undefined) => {
      if (!name) return;
      try {
        await this.o.client.get(ref, ro.metadata.namespace, name);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        problems.push(`${kind} "${name}" does not exist in namespace ${ro.metadata.namespace}`);
      }
    };
    for (const name of new Set(services)) await check(SERVICES, 'service', name);
    for (const name of new Set(ingresses)) await check(INGRESSES, 'ingress', name);
    return problems;
  }

  // ---- canary --------------------------------------------------------------------------------

  private async canary(ctx: Context): Promise<void> {
    const { ro, status, replicas, newRS, now } = ctx;
    const canary = ro.spec.strategy!.canary!;
    const steps = canary.steps ?? [];
    const router = Boolean(canary.trafficRouting?.nginx);
    const updating = status.currentPodHash !== status.stableRS;
    const stableRS = ctx.stableRS;

    if (!updating || !stableRS) {
      // Steady state: everything on the stable revision.
      status.currentStepIndex = steps.length;
      await this.scale(newRS, replicas);
      await this.scaleDownOthers(
        ctx,
        [newRS],
        router ? (canary.scaleDownDelaySeconds ?? DEFAULT_SCALE_DOWN_DELAY) : 0,
      );
      await this.pointServices(ctx, [canary.stableService, canary.canaryService], status.stableRS!);
      await this.route(ctx, 0);
      this.weights(ctx, 0);
      return;
    }

    if (status.abort) {
      await this.stopAnalysesOnAbort(ctx);
      // Back to the stable revision: traffic first, then the canary's pods.
      await this.route(ctx, 0);
      await this.pointServices(ctx, [canary.stableService], status.stableRS!);
      await this.scale(stableRS, replicas);
      const delay = router ? (canary.abortScaleDownDelaySeconds ?? DEFAULT_SCALE_DOWN_DELAY) : 0;
      await this.scaleDownAfter(ctx, newRS, delay);
      this.weights(ctx, 0);
      return;
    }

    await this.pointServices(ctx, [canary.stableService], status.stableRS!);
    await this.pointServices(ctx, [canary.canaryService], status.currentPodHash!);
    await this.backgroundAnalysis(ctx);
    if (status.abort) return this.canary(ctx);

    let index = status.promoteFull ? steps.length : (status.currentStepIndex ?? 0);
    // Walk the steps until one has to wait.
    for (; index < steps.length; index++) {
      status.currentStepIndex = index;
      if (ro.spec.paused) break;
      const step = steps[index]!;
      const weight = weightAt(steps, index);
      if (step.setWeight !== undefined || step.setCanaryScale !== undefined) {
        const reached = await this.reachWeight(ctx, weight, router, step.setCanaryScale);
        if (!reached) break;
        continue;
      }
      if (step.pause) {
        if (!(await this.holdPause(ctx, 'CanaryPauseStep', pauseDurationMs(step.pause.duration)))) break;
        continue;
      }
      if (step.analysis) {
        const outcome = await this.runAnalysis(
          ctx,
          `${ro.metadata.name}-${status.currentPodHash}-${index}`,
          step.analysis,
          status.canary?.currentStepAnalysisRunStatus?.name,
        );
        status.canary = {
          ...status.canary,
          currentStepAnalysisRunStatus: {
            name: outcome.name,
            status: outcome.phase,
            ...(outcome.message ? { message: outcome.message } : {}),
          },
        };
        if (outcome.phase === 'Successful') continue;
        if (outcome.phase === 'Failed' || outcome.phase === 'Error') {
          await this.abort(
            ctx,
            `analysis run ${outcome.name} ${outcome.phase.toLowerCase()}${outcome.message ? `: ${outcome.message}` : ''}`,
          );
          return this.canary(ctx);
        }
        if (outcome.phase === 'Inconclusive') {
          if (!(await this.holdPause(ctx, 'InconclusiveAnalysisRun', undefined))) break;
          continue;
        }
        break;
      }
    }
    // Keep the pods of the step we are at.
    if (index < steps.length) {
      status.currentStepIndex = index;
      const weight = weightAt(
        steps,
        index - 1 >= 0 && steps[index]?.setWeight === undefined ? index - 1 : index,
      );
      if (steps[index]?.setWeight === undefined) await this.reachWeight(ctx, weight, router, undefined);
      this.progressDeadline(ctx);
      return;
    }
    // All steps done: the canary becomes the stable revision.
    status.currentStepIndex = steps.length;
    if (!(await this.reachWeight(ctx, 100, router, undefined))) return;
    await this.promote(ctx);
    await this.pointServices(ctx, [canary.stableService, canary.canaryService], status.stableRS!);
    await this.route(ctx, 0);
    await this.scaleDownOthers(
      ctx,
      [newRS],
      router ? (canary.scaleDownDelaySeconds ?? DEFAULT_SCALE_DOWN_DELAY) : 0,
    );
    this.weights(ctx, 0);
    void now;
  }

  /** Scales for `weight`; true once the canary's pods are available and traffic is there. */
  private async reachWeight(
    ctx: Context,
    weight: number,
    router: boolean,
    canaryScale: { replicas?: number; weight?: number; matchTrafficWeight?: boolean } | undefined,
  ): Promise<boolean> {
    const { replicas, newRS } = ctx;
    const stableRS = ctx.stableRS!;
    const target = canaryCounts(replicas, weight, router);
    if (canaryScale?.replicas !== undefined) target.canary = canaryScale.replicas;
    else if (canaryScale?.weight !== undefined)
      target.canary = Math.ceil((replicas * canaryScale.weight) / 100);
    if (router) {
      // The router splits traffic: the stable keeps all its pods, the canary gets its share.
      await this.scale(newRS, target.canary);
      await this.scale(stableRS, replicas);
    } else {
      // Pods move like a rolling update (Argo's basic canary): at most replicas + maxSurge pods in
      // all, and at least replicas - maxUnavailable of them available, until the weight is reached.
      const canary = ctx.ro.spec.strategy!.canary!;
      let surge = resolveIntOrPercent(canary.maxSurge, replicas, true, '25%');
      const unavailable = resolveIntOrPercent(canary.maxUnavailable, replicas, false, '25%');
      if (surge === 0 && unavailable === 0) surge = 1;
      const stableNow = stableRS.spec.replicas ?? 0;
      const canaryNow = newRS.spec.replicas ?? 0;
      const canaryWant = Math.min(target.canary, Math.max(canaryNow, replicas + surge - stableNow));
      await this.scale(newRS, canaryWant);
      const available =
        Math.min(newRS.status?.availableReplicas ?? 0, canaryWant) +
        (stableRS.status?.availableReplicas ?? 0);
      // Stable pods that can go without dropping below replicas - maxUnavailable available.
      const removable = Math.max(0, available - (replicas - unavailable));
      const stableWant = Math.max(target.stable, Math.min(stableNow, stableNow - removable));
      // Never grow the stable here unless the weight went down (setWeight to a lower value).
      await this.scale(stableRS, stableNow > target.stable ? stableWant : target.stable);
    }
    const ready =
      (newRS.status?.availableReplicas ?? 0) >= target.canary &&
      (stableRS.spec.replicas ?? 0) === target.stable;
    if (router) {
      // Traffic follows only pods that are up.
      await this.route(
        ctx,
        ready
          ? Math.min(weight, ctx.ro.spec.strategy!.canary!.trafficRouting?.maxTrafficWeight ?? 100)
          : (ctx.status.canary?.weights?.canary.weight ?? 0),
      );
    }
    this.weights(
      ctx,
      router
        ? ready
          ? weight
          : (ctx.status.canary?.weights?.canary.weight ?? 0)
        : replicas
          ? Math.round(((newRS.status?.availableReplicas ?? 0) / replicas) * 100)
          : 0,
    );
    return ready;
  }

  private weights(ctx: Context, canaryWeight: number): void {
    const canary = ctx.ro.spec.strategy?.canary;
    if (!canary) return;
    const w = Math.min(100, Math.max(0, canaryWeight));
    ctx.status.canary = {
      ...ctx.status.canary,
      weights: {
        canary: {
          weight: w,
          podTemplateHash: ctx.status.currentPodHash!,
          ...(canary.canaryService ? { serviceName: canary.canaryService } : {}),
        },
        stable: {
          weight: 100 - w,
          podTemplateHash: ctx.status.stableRS!,
          ...(canary.stableService ? { serviceName: canary.stableService } : {}),
        },
      },
    };
  }

  private async route(ctx: Context, weight: number): Promise<void> {
    const canary = ctx.ro.spec.strategy?.canary;
    if (!canary?.trafficRouting?.nginx) return;
    await syncCanaryIngress(this.o.client, ctx.ro, canary, weight);
  }

  private async backgroundAnalysis(ctx: Context): Promise<void> {
    const analysis = ctx.ro.spec.strategy!.canary!.analysis;
    if (!analysis?.templates?.length) return;
    if ((ctx.status.currentStepIndex ?? 0) < (analysis.startingStep ?? 0)) return;
    const outcome = await this.runAnalysis(
      ctx,
      `${ctx.ro.metadata.name}-${ctx.status.currentPodHash}-background`,
      analysis,
      ctx.status.canary?.currentBackgroundAnalysisRunStatus?.name,
    );
    ctx.status.canary = {
      ...ctx.status.canary,
      currentBackgroundAnalysisRunStatus: {
        name: outcome.name,
        status: outcome.phase,
        ...(outcome.message ? { message: outcome.message } : {}),
      },
    };
    if (outcome.phase === 'Failed' || outcome.phase === 'Error') {
      await this.abort(
        ctx,
        `background analysis ${outcome.name} ${outcome.phase.toLowerCase()}${outcome.message ? `: ${outcome.message}` : ''}`,
      );
    }
  }

  // ---- blue/green ----------------------------------------------------------------------------

  private async blueGreen(ctx: Context): Promise<void> {
    const { ro, status, replicas, newRS, now } = ctx;
    const bg = ro.spec.strategy!.blueGreen!;
    const stableHash = status.stableRS!;
    const updating = status.currentPodHash !== stableHash;
    status.blueGreen = { ...status.blueGreen };

    if (!updating || !ctx.stableRS) {
      await this.scale(newRS, replicas);
      await this.pointServices(ctx, [bg.activeService, bg.previewService], stableHash);
      status.blueGreen.activeSelector = stableHash;
      status.blueGreen.previewSelector = stableHash;
      await this.scaleDownOthers(ctx, [newRS], bg.scaleDownDelaySeconds ?? DEFAULT_SCALE_DOWN_DELAY);
      return;
    }
    const stableRS = ctx.stableRS;
    if (status.abort) {
      await this.stopAnalysesOnAbort(ctx);
      await this.pointServices(ctx, [bg.activeService], stableHash);
      status.blueGreen.activeSelector = stableHash;
      await this.scale(stableRS, replicas);
      // 0 means: keep the aborted preview's pods for inspection.
      const delay = bg.abortScaleDownDelaySeconds ?? DEFAULT_SCALE_DOWN_DELAY;
      if (delay > 0) await this.scaleDownAfter(ctx, newRS, delay);
      return;
    }

    // The active Service keeps serving the stable revision until promotion.
    await this.scale(stableRS, replicas);
    const switched = status.blueGreen.activeSelector === status.currentPodHash;
    if (!switched) {
      await this.pointServices(ctx, [bg.activeService], stableHash);
      status.blueGreen.activeSelector = stableHash;
    }
    await this.pointServices(ctx, [bg.previewService], status.currentPodHash!);
    status.blueGreen.previewSelector = status.currentPodHash!;
    if (ro.spec.paused) return;

    if (!switched) {
      const previewCount = bg.previewReplicaCount ?? replicas;
      const promoting = status.blueGreen.scaleUpPreviewCheckPoint === true;
      const want = promoting ? replicas : Math.min(previewCount, replicas);
      await this.scale(newRS, want);
      if ((newRS.status?.availableReplicas ?? 0) < want) return this.progressDeadline(ctx);
      if (!promoting) {
        if (bg.prePromotionAnalysis?.templates?.length && !status.promoteFull) {
          const outcome = await this.runAnalysis(
            ctx,
            `${ro.metadata.name}-${status.currentPodHash}-pre`,
            bg.prePromotionAnalysis,
            status.blueGreen.prePromotionAnalysisRunStatus?.name,
          );
          status.blueGreen.prePromotionAnalysisRunStatus = {
            name: outcome.name,
            status: outcome.phase,
            ...(outcome.message ? { message: outcome.message } : {}),
          };
          if (outcome.phase === 'Failed' || outcome.phase === 'Error') {
            await this.abort(ctx, `pre-promotion analysis ${outcome.name} ${outcome.phase.toLowerCase()}`);
            return this.blueGreen(ctx);
          }
          if (outcome.phase === 'Inconclusive') {
            if (!(await this.holdPause(ctx, 'InconclusiveAnalysisRun', undefined))) return;
          } else if (outcome.phase !== 'Successful') return;
        }
        if (!status.promoteFull) {
          const manual = bg.autoPromotionEnabled === false;
          const seconds = bg.autoPromotionSeconds;
          if (manual || seconds !== undefined) {
            if (!(await this.holdPause(ctx, 'BlueGreenPause', manual ? undefined : seconds! * 1000))) return;
          }
        }
        status.blueGreen.scaleUpPreviewCheckPoint = true;
        if (want < replicas) {
          await this.scale(newRS, replicas);
          return;
        }
      }
      // Switch only once the new revision is fully available.
      await this.pointServices(ctx, [bg.activeService], status.currentPodHash!);
      status.blueGreen.activeSelector = status.currentPodHash!;
      await this.event(
        ctx,
        'Normal',
        'SwitchActiveService',
        `active service ${bg.activeService} now selects ${status.currentPodHash}`,
      );
    }
    await this.scale(newRS, replicas);
    if (bg.postPromotionAnalysis?.templates?.length && !status.promoteFull) {
      const outcome = await this.runAnalysis(
        ctx,
        `${ro.metadata.name}-${status.currentPodHash}-post`,
        bg.postPromotionAnalysis,
        status.blueGreen.postPromotionAnalysisRunStatus?.name,
      );
      status.blueGreen.postPromotionAnalysisRunStatus = {
        name: outcome.name,
        status: outcome.phase,
        ...(outcome.message ? { message: outcome.message } : {}),
      };
      if (outcome.phase === 'Failed' || outcome.phase === 'Error') {
        await this.abort(ctx, `post-promotion analysis ${outcome.name} ${outcome.phase.toLowerCase()}`);
        return this.blueGreen(ctx);
      }
      if (outcome.phase !== 'Successful') return;
    }
    await this.promote(ctx);
    // The old revision keeps its pods for scaleDownDelaySeconds: clients may still hold connections.
    await this.scaleDownOthers(ctx, [newRS], bg.scaleDownDelaySeconds ?? DEFAULT_SCALE_DOWN_DELAY);
    void now;
  }

  // ---- shared steps --------------------------------------------------------------------------

  /**
   * Holds a pause: adds the pause condition once, and reports true when it is over (its duration
   * passed, or a user promoted, which removes the condition after the controller set it).
   */
  private async holdPause(
    ctx: Context,
    reason: PauseReason,
    durationMs: number | undefined,
  ): Promise<boolean> {
    const { status, now } = ctx;
    const key = `${reason}@${status.currentStepIndex ?? 0}`;
    const held = status.pauseConditions?.find((p) => p.reason === reason);
    if (!held) {
      if (status.controllerPause && status.currentStepHash === key) {
        // We paused here before and the condition is gone: someone promoted. Move on.
        delete status.controllerPause;
        delete status.currentStepHash;
        return true;
      }
      status.pauseConditions = [...(status.pauseConditions ?? []), { reason, startTime: now.toISOString() }];
      status.controllerPause = true;
      status.currentStepHash = key;
      await this.event(
        ctx,
        'Normal',
        'RolloutPaused',
        `paused (${reason})${durationMs !== undefined ? ` for ${durationMs / 1000}s` : ' until promoted'}`,
      );
      if (durationMs !== undefined) ctx.wake.push(now.getTime() + durationMs);
      return durationMs === 0;
    }
    if (durationMs !== undefined) {
      const end = Date.parse(held.startTime) + durationMs;
      if (now.getTime() >= end) {
        status.pauseConditions = status.pauseConditions!.filter((p) => p !== held);
        if (status.pauseConditions.length === 0) delete status.pauseConditions;
        delete status.controllerPause;
        delete status.currentStepHash;
        return true;
      }
      ctx.wake.push(end);
    }
    return false;
  }

  private async runAnalysis(
    ctx: Context,
    name: string,
    analysis: RolloutAnalysis,
    recorded: string | undefined,
  ): Promise<AnalysisOutcome> {
    if (!this.o.analysis)
      return { name, phase: 'Error', message: 'analysis is not available in this controller' };
    const base = name.slice(0, 240);
    // A recorded run belongs to this slot only if it was started for this name (this step).
    const mine = recorded && (recorded === base || recorded.startsWith(`${base}.`)) ? recorded : undefined;
    // Args such as podTemplateHashValue resolve against the status being decided, not the copy
    // read: on a copy from before this revision was seen, Latest would name the old pods.
    return this.o.analysis.ensure(
      { ...ctx.ro, status: ctx.status },
      base,
      analysis,
      ctx.status.currentPodHash!,
      mine,
    );
  }

  /** Background analysis ends with the update it watched (completion or abort). */
  private async stopBackgroundAnalysis(ctx: Context): Promise<void> {
    const run = ctx.status.canary?.currentBackgroundAnalysisRunStatus;
    if (run && this.o.analysis && !['Successful', 'Failed', 'Error', 'Inconclusive'].includes(run.status)) {
      await this.o.analysis.terminate(ctx.ro, run.name);
    }
  }

  /**
   * An aborted rollout's analysis runs that are still measuring end with it (as Argo cancels
   * them): a step's or blue/green's run would otherwise go on, e.g. a dispatched workflow.
   */
  private async stopAnalysesOnAbort(ctx: Context): Promise<void> {
    if (!this.o.analysis) return;
    const { canary, blueGreen } = ctx.status;
    for (const run of [
      canary?.currentStepAnalysisRunStatus,
      canary?.currentBackgroundAnalysisRunStatus,
      blueGreen?.prePromotionAnalysisRunStatus,
      blueGreen?.postPromotionAnalysisRunStatus,
    ]) {
      if (run && !['Successful', 'Failed', 'Error', 'Inconclusive'].includes(run.status)) {
        await this.o.analysis.terminate(ctx.ro, run.name);
      }
    }
  }

  private async abort(ctx: Context, message: string): Promise<void> {
    await this.stopBackgroundAnalysis(ctx);
    ctx.status.abort = true;
    ctx.status.abortedAt = ctx.now.toISOString();
    delete ctx.status.pauseConditions;
    delete ctx.status.controllerPause;
    ctx.status.message = `RolloutAborted: ${message}`;
    await this.event(ctx, 'Warning', 'RolloutAborted', message);
  }

  private async promote(ctx: Context): Promise<void> {
    const { status } = ctx;
    await this.stopBackgroundAnalysis(ctx);
    if (status.stableRS !== status.currentPodHash) {
      await this.event(ctx, 'Normal', 'RolloutCompleted', `revision ${status.currentPodHash} is now stable`);
    }
    status.stableRS = status.currentPodHash!;
    delete status.pauseConditions;
    delete status.controllerPause;
    delete status.currentStepHash;
    delete status.promoteFull;
    ctx.stableRS = ctx.newRS;
  }

  private progressDeadline(ctx: Context): void {
    const { ro, status, now } = ctx;
    if (status.pauseConditions?.length || ro.spec.paused) return;
    const deadline = (ro.spec.progressDeadlineSeconds ?? 600) * 1000;
    const since = Date.parse(status.progressStartedAt ?? now.toISOString());
    if (now.getTime() - since < deadline) {
      ctx.wake.push(since + deadline);
      return;
    }
    setCondition(status, now, {
      type: 'Progressing',
      status: 'False',
      reason: 'ProgressDeadlineExceeded',
      message: `revision ${status.currentPodHash} has not progressed for ${deadline / 1000}s`,
    });
    if (ro.spec.progressDeadlineAbort && !status.abort) {
      status.abort = true;
      status.abortedAt = now.toISOString();
      status.message = `RolloutAborted: progress deadline of ${deadline / 1000}s exceeded`;
    }
  }

  // ---- ReplicaSets and Services ----------------------------------------------------------------

  private async createReplicaSet(
    ro: Rollout,
    hash: string,
    existing: ReplicaSet[],
    replicas: number,
  ): Promise<ReplicaSet> {
    const template = structuredClone(ro.spec.template!);
    template.metadata = {
      ...template.metadata,
      labels: { ...template.metadata?.labels, [POD_TEMPLATE_HASH]: hash },
    };
    const revision =
      Math.max(0, ...existing.map((rs) => Number(rs.metadata.annotations?.[REVISION] ?? 0))) + 1;
    const rs: ReplicaSet = {
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      metadata: {
        name: `${ro.metadata.name}-${hash}`.slice(0, 253),
        namespace: ro.metadata.namespace,
        labels: { ...template.metadata.labels },
        // The template as the Rollout gave it (the ReplicaSet's copy gets the server's defaults):
        // `rollout undo` restores this one, so the revision's hash and ReplicaSet are reused.
        annotations: { [REVISION]: String(revision), [SOURCE_TEMPLATE]: JSON.stringify(ro.spec.template) },
        ownerReferences: [
          {
            apiVersion: ro.apiVersion || ROLLOUT.apiVersion,
            kind: 'Rollout',
            name: ro.metadata.name,
            uid: ro.metadata.uid,
            controller: true,
          },
        ],
      },
      spec: {
        replicas,
        ...(ro.spec.minReadySeconds ? { minReadySeconds: ro.spec.minReadySeconds } : {}),
        selector: { matchLabels: { ...ro.spec.selector!.matchLabels, [POD_TEMPLATE_HASH]: hash } },
        template,
      },
    };
    try {
      return await this.o.client.create(REPLICASETS, rs);
    } catch (err) {
      // Created by an earlier attempt whose write the cache had not shown yet.
      if (!isConflict(err)) throw err;
      return this.o.client.get<ReplicaSet>(REPLICASETS, ro.metadata.namespace, rs.metadata.name);
    }
  }

  private async scale(rs: ReplicaSet, replicas: number): Promise<void> {
    const annotations = rs.metadata.annotations ?? {};
    if (rs.spec.replicas === replicas && !(replicas > 0 && annotations[SCALE_DOWN_DEADLINE])) return;
    const patch: Record<string, unknown> = { spec: { replicas } };
    // Scaling up an old revision cancels its pending scale-down.
    if (replicas > 0 && annotations[SCALE_DOWN_DEADLINE])
      patch.metadata = { annotations: { [SCALE_DOWN_DEADLINE]: null } };
    const updated = await this.o.client.patch<ReplicaSet>(
      REPLICASETS,
      rs.metadata.namespace,
      rs.metadata.name,
      patch,
      PatchType.merge,
    );
    rs.spec = updated.spec;
    rs.metadata.annotations = updated.metadata.annotations;
  }

  /** Scales `rs` to 0 once `delaySeconds` have passed since this was first asked (an annotated deadline). */
  private async scaleDownAfter(ctx: Context, rs: ReplicaSet, delaySeconds: number): Promise<void> {
    if ((rs.spec.replicas ?? 0) === 0) return;
    if (delaySeconds <= 0) return this.scale(rs, 0);
    const deadline = rs.metadata.annotations?.[SCALE_DOWN_DEADLINE];
    if (!deadline) {
      const at = new Date(ctx.now.getTime() + delaySeconds * 1000).toISOString();
      const updated = await this.o.client.patch<ReplicaSet>(
        REPLICASETS,
        rs.metadata.namespace,
        rs.metadata.name,
        { metadata: { annotations: { [SCALE_DOWN_DEADLINE]: at } } },
        PatchType.merge,
      );
      rs.metadata.annotations = updated.metadata.annotations;
      ctx.wake.push(Date.parse(at));
      return;
    }
    if (ctx.now.getTime() >= Date.parse(deadline)) {
      const updated = await this.o.client.patch<ReplicaSet>(
        REPLICASETS,
        rs.metadata.namespace,
        rs.metadata.name,
        { spec: { replicas: 0 }, metadata: { annotations: { [SCALE_DOWN_DEADLINE]: null } } },
        PatchType.merge,
      );
      rs.spec = updated.spec;
      return;
    }
    ctx.wake.push(Date.parse(deadline));
  }

  private async scaleDownOthers(ctx: Context, keep: ReplicaSet[], delaySeconds: number): Promise<void> {
    for (const rs of ctx.rss) {
      if (keep.includes(rs)) continue;
      await this.scaleDownAfter(ctx, rs, delaySeconds);
    }
  }

  /** Keeps revisionHistoryLimit scaled-down old ReplicaSets (default 10), deleting older ones. */
  private async cleanupOldReplicaSets(ctx: Context): Promise<void> {
    const limit = ctx.ro.spec.revisionHistoryLimit ?? 10;
    const keep = new Set([ctx.status.currentPodHash, ctx.status.stableRS]);
    const old = ctx.rss
      .filter(
        (rs) =>
          !keep.has(rs.metadata.labels?.[POD_TEMPLATE_HASH]) &&
          (rs.spec.replicas ?? 0) === 0 &&
          (rs.status?.replicas ?? 0) === 0,
      )
      .sort(
        (a, b) =>
          Number(b.metadata.annotations?.[REVISION] ?? 0) - Number(a.metadata.annotations?.[REVISION] ?? 0),
      );
    for (const rs of old.slice(limit)) {
      await this.o.client
        .delete(REPLICASETS, rs.metadata.namespace, rs.metadata.name)
        .catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
    }
  }

  /** Points each named Service's selector at a revision (adds the pod-template-hash key). */
  private async pointServices(ctx: Context, names: (string | undefined)[], hash: string): Promise<void> {
    for (const name of names) {
      if (!name) continue;
      let svc: {
        metadata?: { annotations?: Record<string, string> };
        spec?: { selector?: Record<string, string> };
      };
      try {
        svc = await this.o.client.get(SERVICES, ctx.ro.metadata.namespace, name);
      } catch (err) {
        if (isNotFound(err))
          throw new Error(`service ${ctx.ro.metadata.namespace}/${name} does not exist`, { cause: err });
        throw err;
      }
      if (
        svc.spec?.selector?.[POD_TEMPLATE_HASH] === hash &&
        svc.metadata?.annotations?.[MANAGED_BY] === ctx.ro.metadata.name
      )
        continue;
      await this.o.client.patch(
        SERVICES,
        ctx.ro.metadata.namespace,
        name,
        {
          metadata: { annotations: { [MANAGED_BY]: ctx.ro.metadata.name } },
          spec: { selector: { [POD_TEMPLATE_HASH]: hash } },
        },
        PatchType.merge,
      );
    }
  }

  // ---- status -----------------------------------------------------------------------------------

  private summarize(ctx: Context): void {
    const { ro, status, rss, newRS, now } = ctx;
    const live = rss.filter((rs) => !rs.metadata.deletionTimestamp);
    status.replicas = live.reduce((n, rs) => n + (rs.status?.replicas ?? 0), 0);
    status.readyReplicas = live.reduce((n, rs) => n + (rs.status?.readyReplicas ?? 0), 0);
    status.availableReplicas = live.reduce((n, rs) => n + (rs.status?.availableReplicas ?? 0), 0);
    status.updatedReplicas = newRS.status?.replicas ?? 0;
    status.HPAReplicas = status.replicas;
    status.selector = Object.entries({ ...ro.spec.selector?.matchLabels })
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    status.observedGeneration = String(ro.metadata.generation ?? '');
    const paused = ro.spec.paused || (status.pauseConditions?.length ?? 0) > 0;
    const stalled = status.conditions?.some(
      (c) => c.type === 'Progressing' && c.reason === 'ProgressDeadlineExceeded',
    );
    const complete = status.stableRS === status.currentPodHash;
    const allAvailable =
      (newRS.status?.availableReplicas ?? 0) >= (ro.spec.replicas ?? 1) &&
      status.replicas === (ro.spec.replicas ?? 1);
    if (status.abort) {
      status.phase = 'Degraded';
      // An abort by a user leaves the last message behind: say what happened.
      if (!status.message?.startsWith('RolloutAborted')) status.message = 'RolloutAborted';
    } else if (stalled) {
      status.phase = 'Degraded';
      status.message = 'ProgressDeadlineExceeded';
    } else if (paused) {
      status.phase = 'Paused';
      status.message = ro.spec.paused
        ? 'manually paused'
        : `${status.pauseConditions!.map((p) => p.reason).join(', ')}`;
    } else if (complete && allAvailable) {
      status.phase = 'Healthy';
      delete status.message;
    } else {
      status.phase = 'Progressing';
      status.message = complete
        ? 'more replicas need to be available'
        : `updating to revision ${status.currentPodHash}`;
    }
    setCondition(status, now, {
      type: 'Healthy',
      status: status.phase === 'Healthy' ? 'True' : 'False',
      reason: status.phase,
      message: status.message ?? 'rollout is healthy',
    });
    setCondition(status, now, {
      type: 'Paused',
      status: paused ? 'True' : 'False',
      reason: paused ? 'RolloutPaused' : 'RolloutResumed',
      message: paused ? (status.message ?? '') : 'rollout is not paused',
    });
    if (complete && status.phase === 'Healthy') {
      setCondition(status, now, {
        type: 'Completed',
        status: 'True',
        reason: 'RolloutCompleted',
        message: 'rollout completed',
      });
    } else if (!complete) {
      setCondition(status, now, {
        type: 'Completed',
        status: 'False',
        reason: 'RolloutProgressing',
        message: 'rollout in progress',
      });
    }
  }

  private async writeStatus(ro: Rollout, previous: RolloutStatus, status: RolloutStatus): Promise<void> {
    if (stableJSON(previous) === stableJSON(status)) return;
    // Replaced whole (a merge patch would keep fields this controller removed, e.g. pause
    // conditions), guarded by the resourceVersion: a promote/abort from the CLI in between wins.
    await this.o.client.request(
      'PATCH',
      resourcePath(ROLLOUT, ro.metadata.namespace, ro.metadata.name, 'status'),
      {
        body: [
          { op: 'test', path: '/metadata/resourceVersion', value: ro.metadata.resourceVersion },
          { op: 'add', path: '/status', value: status },
        ],
        contentType: PatchType.json,
      },
    );
  }

  private async event(
    ctx: Context,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
  ): Promise<void> {
    this.o.logger.info(message, { rollout: `${ctx.ro.metadata.namespace}/${ctx.ro.metadata.name}`, reason });
    await this.o.events?.record(
      { apiVersion: ROLLOUT.apiVersion, kind: 'Rollout', metadata: ctx.ro.metadata },
      type,
      reason,
      message,
    );
  }
}

function setCondition(
  status: RolloutStatus,
  now: Date,
  c: Omit<RolloutCondition, 'lastUpdateTime' | 'lastTransitionTime'>,
): void {
  const list = status.conditions ?? [];
  const existing = list.find((x) => x.type === c.type);
  if (
    existing &&
    existing.status === c.status &&
    existing.reason === c.reason &&
    existing.message === c.message
  )
    return;
  const at = now.toISOString();
  const next: RolloutCondition = {
    ...c,
    lastUpdateTime: at,
    lastTransitionTime: existing?.status === c.status ? existing.lastTransitionTime : at,
  };
  status.conditions = [...list.filter((x) => x.type !== c.type), next];
}

function removeCondition(status: RolloutStatus, type: RolloutCondition['type']): void {
  if (!status.conditions?.some((c) => c.type === type)) return;
  status.conditions = status.conditions.filter((c) => c.type !== type);
}
