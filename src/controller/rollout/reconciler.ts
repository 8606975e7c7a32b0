// One Rollout reconcile: gather (gather.ts) -> decide (decide.ts, pure) -> act (act.ts); the
// package's layout is in index.ts.
//
// Every decision is read from and written to the Rollout's status and the ReplicaSets'
// annotations, so a restarted controller resumes mid-rollout; timed events (pause expiry,
// scale-down deadlines, progress deadlines) come back as precise requeues, not polling.
import type { Request } from '../../core/kube/objects.ts';
import type { KubeClient } from '../../core/kube/client.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Logger } from '../runtime/log.ts';
import { act, StaleRollout } from './act.ts';
import { decide } from './decide.ts';
import { gather, type RolloutCache } from './gather.ts';

export interface RolloutReconcilerOptions {
  client: KubeClient;
  cache: RolloutCache;
  events?: EventRecorder;
  logger: Logger;
  now?: () => Date;
}

export interface ReconcileResult {
  requeueAfter?: number;
}

/** How soon to gather again after losing a status race (the cache catches up meanwhile). */
const STALE_RETRY_MS = 100;

export class RolloutReconciler {
  private readonly o: RolloutReconcilerOptions;

  constructor(options: RolloutReconcilerOptions) {
    this.o = options;
  }

  async reconcile(req: Request, ctx: { signal?: AbortSignal; log?: Logger } = {}): Promise<ReconcileResult> {
    const observed = gather(this.o.cache, req.namespace, req.name);
    if (!observed) return {};
    const plan = decide(observed, this.o.now?.() ?? new Date());
    const log = ctx.log ?? this.o.logger.child({ rollout: `${req.namespace}/${req.name}` });
    try {
      await act(
        { client: this.o.client, cache: this.o.cache, events: this.o.events, signal: ctx.signal },
        observed.rollout,
        plan,
      );
    } catch (err) {
      if (err instanceof StaleRollout) return { requeueAfter: STALE_RETRY_MS };
      throw err;
    }
    for (const event of plan.events) log.info(event.message, { reason: event.reason });
    return plan.requeueAfter !== undefined ? { requeueAfter: plan.requeueAfter } : {};
  }
}
