// The act step of a Rollout reconcile: applies a Plan through the API in an order that never
// leaves traffic without pods — create the new ReplicaSet, scale up, start analysis, move Service
// selectors and canary Ingress weights, only then scale down and delete — and writes status last,
// guarded by the resourceVersion that was read. Every object written goes back into the cache.
import {
  isAlreadyExists,
  isConflict,
  isInvalid,
  isNotFound,
  PatchType,
  type KubeClient,
} from '../../core/kube/client.ts';
import { resourcePath } from '../../core/kube/objects.ts';
import { ANALYSIS_RUN } from '../analysis/types.ts';
import type { EventRecorder } from '../runtime/events.ts';
import { startRun, stopRun } from './analysis.ts';
import type { RolloutCache } from './gather.ts';
import { applyCanaryIngress } from './nginx.ts';
import type { Plan, ReplicaSetWrite } from './plan.ts';
import {
  DEPLOYMENTS,
  INGRESSES,
  MANAGED_BY,
  POD_TEMPLATE_HASH,
  REPLICASETS,
  ROLLOUT,
  SCALE_DOWN_DEADLINE,
  SERVICES,
  type ReplicaSet,
  type Rollout,
} from './types.ts';

export interface ActContext {
  client: KubeClient;
  cache: RolloutCache;
  events?: EventRecorder;
  /** Aborted when this replica stops leading: no write is started after that. */
  signal?: AbortSignal;
}

/** The status write lost a race (someone changed the Rollout since it was read): gather again. */
export class StaleRollout extends Error {
  override name = 'StaleRollout';
}

/** `ro` is the Rollout as read (its resourceVersion guards the status write). */
export async function act(ctx: ActContext, ro: Rollout, plan: Plan): Promise<void> {
  const { client, cache } = ctx;
  const ns = ro.metadata.namespace;
  const step = async <T extends object>(
    write: () => Promise<T>,
    resource?: Parameters<RolloutCache['written']>[0],
  ) => {
    ctx.signal?.throwIfAborted();
    const obj = await write();
    if (resource) cache.written(resource, obj);
    return obj;
  };

  if (plan.createReplicaSet) {
    const rs = plan.createReplicaSet;
    await step(
      () =>
        client.create(REPLICASETS, rs).catch((err: unknown) => {
          // Created by an earlier attempt whose write the cache had not shown yet.
          if (!isAlreadyExists(err)) throw err;
          return client.get<ReplicaSet>(REPLICASETS, ns, rs.metadata.name);
        }),
      REPLICASETS,
    );
  }
  for (const write of plan.scaleUps) await step(() => patchReplicaSet(client, ns, write), REPLICASETS);
  // Runs before traffic moves: the decision may already count on their verdict next time.
  const decided = plan.status ? { ...ro, status: plan.status } : ro;
  for (const run of plan.createRuns) await step(() => startRun(client, decided, run), ANALYSIS_RUN);
  for (const { name, hash } of plan.services) {
    await step(
      () =>
        client.patch(
          SERVICES,
          ns,
          name,
          {
            metadata: { annotations: { [MANAGED_BY]: ro.metadata.name } },
            spec: { selector: { [POD_TEMPLATE_HASH]: hash } },
          },
          PatchType.merge,
        ),
      SERVICES,
    );
  }
  for (const write of plan.ingresses) await step(() => applyCanaryIngress(client, write), INGRESSES);
  for (const write of plan.scaleDowns) await step(() => patchReplicaSet(client, ns, write), REPLICASETS);
  for (const name of plan.deleteReplicaSets) {
    await step(() =>
      client.delete(REPLICASETS, ns, name).then(
        () => ({}),
        (err: unknown) => {
          if (!isNotFound(err)) throw err;
          return {};
        },
      ),
    );
  }
  if (plan.workloadReplicas !== undefined && ro.spec.workloadRef) {
    const name = ro.spec.workloadRef.name;
    const replicas = plan.workloadReplicas;
    await step(
      () => client.patch(DEPLOYMENTS, ns, name, { spec: { replicas } }, PatchType.merge),
      DEPLOYMENTS,
    );
  }
  for (const name of plan.terminateRuns) await step(() => stopRun(client, ro, name).then(() => ({})));

  if (plan.status) {
    ctx.signal?.throwIfAborted();
    try {
      // A PUT of the status subresource carries the resourceVersion read: a promote or abort
      // from the CLI in between makes it fail with 409, and this reconcile gathers again.
      const updated = await client.request<Rollout>(
        'PUT',
        resourcePath(ROLLOUT, ns, ro.metadata.name, 'status'),
        {
          body: { ...ro, status: plan.status },
        },
      );
      cache.written(ROLLOUT, updated);
    } catch (err) {
      if (isConflict(err))
        throw new StaleRollout(`rollout ${ns}/${ro.metadata.name} changed since it was read`);
      // Invalid is not a race: retrying the same write every 200 ms would only repeat it.
      if (isInvalid(err))
        throw new Error(
          `the apiserver refused the status of rollout ${ns}/${ro.metadata.name}: ${(err as Error).message}`,
          { cause: err },
        );
      throw err;
    }
  }
  // Only once status says so: a lost race would otherwise announce a step twice.
  for (const event of plan.events) {
    await ctx.events?.record(
      { apiVersion: ROLLOUT.apiVersion, kind: 'Rollout', metadata: ro.metadata },
      event.type,
      event.reason,
      event.message,
    );
  }
}

function patchReplicaSet(client: KubeClient, ns: string, write: ReplicaSetWrite): Promise<ReplicaSet> {
  const patch: { spec?: { replicas: number }; metadata?: { annotations: Record<string, string | null> } } =
    {};
  if (write.replicas !== undefined) patch.spec = { replicas: write.replicas };
  if (write.deadline !== undefined)
    patch.metadata = { annotations: { [SCALE_DOWN_DEADLINE]: write.deadline } };
  return client.patch<ReplicaSet>(REPLICASETS, ns, write.name, patch, PatchType.merge);
}
