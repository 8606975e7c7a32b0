// ReplicaSets of a rollout (one per pod-template revision, as Argo Rollouts keeps them): the
// object for a new revision, the history limit, and a workloadRef Deployment handing its pods over.
// Pure: the decision says what to create, delete and scale; act.ts writes it.
import type { Decision } from './plan.ts';
import {
  POD_TEMPLATE_HASH,
  REVISION,
  ROLLOUT,
  SOURCE_TEMPLATE,
  type ReplicaSet,
  type Rollout,
} from './types.ts';

/** The ReplicaSet for revision `hash` of the rollout's template, numbered after `existing`. */
export function newReplicaSet(
  ro: Rollout,
  hash: string,
  existing: ReplicaSet[],
  replicas: number,
): ReplicaSet {
  const template = structuredClone(ro.spec.template!);
  template.metadata = {
    ...template.metadata,
    labels: { ...template.metadata?.labels, [POD_TEMPLATE_HASH]: hash },
  };
  const revision = Math.max(0, ...existing.map((rs) => Number(rs.metadata.annotations?.[REVISION] ?? 0))) + 1;
  return {
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
}

/** Keeps revisionHistoryLimit scaled-down old ReplicaSets (default 10), deleting older ones. */
export function cleanupOldReplicaSets(d: Decision): void {
  const limit = d.ro.spec.revisionHistoryLimit ?? 10;
  const keep = new Set([d.status.currentPodHash, d.status.stableRS]);
  const old = d.rss
    .filter(
      (rs) =>
        !d.isCreated(rs) &&
        !keep.has(d.hashOf(rs)) &&
        (rs.spec.replicas ?? 0) === 0 &&
        (rs.status?.replicas ?? 0) === 0,
    )
    .sort(
      (a, b) =>
        Number(b.metadata.annotations?.[REVISION] ?? 0) - Number(a.metadata.annotations?.[REVISION] ?? 0),
    );
  for (const rs of old.slice(limit)) d.deleteReplicaSet(rs);
}

/**
 * workloadRef's scaleDown: `onsuccess` scales the Deployment to 0 once the rollout is Healthy,
 * `progressively` by as many pods as the rollout has available; `never` leaves it alone.
 */
export function scaleDownWorkload(d: Decision): void {
  const ref = d.ro.spec.workloadRef;
  const mode = ref?.scaleDown ?? 'never';
  const deployment = d.observed.deployment;
  if (!ref || mode === 'never' || !deployment) return;
  const current = deployment.spec.replicas ?? 1;
  const want =
    mode === 'onsuccess'
      ? d.status.phase === 'Healthy'
        ? 0
        : current
      : Math.max(0, d.replicas - (d.status.availableReplicas ?? 0));
  if (want < current) d.workloadReplicas = want;
}
