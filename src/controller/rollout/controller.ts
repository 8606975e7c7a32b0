// Wires the Rollout reconciler into a Manager. The reconciler reads only caches, so everything it
// reads is watched, and every watch maps back to the Rollouts it matters to:
// - Rollouts: spec changes and the status edits of the CLI (promote, abort, retry);
// - their ReplicaSets (pods becoming available move a rollout on) and AnalysisRuns (a verdict);
// - Services, Ingresses, a workloadRef's Deployment, AnalysisTemplates and (metadata only)
//   Secrets, by the names a Rollout gives: one created after the Rollout clears its InvalidSpec.
import type { KubeObject, Request, ResourceRef } from '../../core/kube/objects.ts';
import { ANALYSIS_RUN, ANALYSIS_TEMPLATE, CLUSTER_ANALYSIS_TEMPLATE } from '../analysis/types.ts';
import type { AnalysisRun, AnalysisTemplate } from '../analysis/types.ts';
import { enqueueOwner, type Predicate } from '../runtime/controller.ts';
import type { Informer } from '../runtime/informer.ts';
import type { Manager } from '../runtime/manager.ts';
import { referencesOf, type RolloutCache, type RolloutReferences } from './gather.ts';
import type { Ingress } from './nginx.ts';
import type { ObservedService } from './plan.ts';
import { RolloutReconciler } from './reconciler.ts';
import {
  DEPLOYMENTS,
  INGRESSES,
  REPLICASETS,
  ROLLOUT,
  SERVICES,
  type Deployment,
  type ReplicaSet,
  type Rollout,
} from './types.ts';

export interface RolloutControllerOptions {
  namespace?: string;
  maxConcurrentReconciles?: number;
  /**
   * false for a namespace-scoped install: ClusterAnalysisTemplates (cluster-scoped) are not
   * watched, since the controller may not list them; a Rollout naming one is InvalidSpec.
   */
  clusterScope?: boolean;
}

const SECRETS: ResourceRef = { apiVersion: 'v1', resource: 'secrets', namespaced: true };

/** Reconcile on anything but our own status writes' echo (resourceVersion-only changes are cheap anyway). */
function rolloutChanged(): Predicate<Rollout> {
  return {
    update: (oldRo, newRo, info) =>
      info.resync ||
      oldRo.metadata.generation !== newRo.metadata.generation ||
      // The CLI edits status (promote, abort, retry): those must wake the controller.
      JSON.stringify(oldRo.status?.pauseConditions) !== JSON.stringify(newRo.status?.pauseConditions) ||
      oldRo.status?.abort !== newRo.status?.abort ||
      oldRo.status?.promoteFull !== newRo.status?.promoteFull ||
      oldRo.status?.currentStepIndex !== newRo.status?.currentStepIndex,
  };
}

const invalid = (ro: Rollout) =>
  ro.status?.conditions?.some((c) => c.type === 'InvalidSpec' && c.status === 'True');

/** The caches a Rollout reconcile reads (see gather.ts), one informer per kind. */
export interface RolloutInformers {
  rollouts: Informer<Rollout & KubeObject>;
  replicaSets: Informer<ReplicaSet & KubeObject>;
  services: Informer<ObservedService & KubeObject>;
  ingresses: Informer<Ingress & KubeObject>;
  deployments: Informer<Deployment & KubeObject>;
  runs: Informer<AnalysisRun>;
  templates: Informer<AnalysisTemplate>;
  /** Undefined in a namespace-scoped install. */
  clusterTemplates?: Informer<AnalysisTemplate>;
  /** Metadata only. */
  secrets: Informer<KubeObject>;
}

/** The informers a Rollout controller watching `namespace` (all if empty) needs. */
export function rolloutInformers(manager: Manager, namespace = '', clusterScope = true): RolloutInformers {
  // Nothing here reads managedFields: the caches go without them (the same selection as the
  // analysis controller's, so the AnalysisRun informer is shared).
  const informer = <T extends KubeObject>(ref: ResourceRef, metadataOnly = false) =>
    manager.informer<T>(ref, {
      namespace,
      ...(metadataOnly ? { metadataOnly } : { dropManagedFields: true }),
    });
  return {
    rollouts: informer(ROLLOUT),
    replicaSets: informer(REPLICASETS),
    services: informer(SERVICES),
    ingresses: informer(INGRESSES),
    deployments: informer(DEPLOYMENTS),
    runs: informer(ANALYSIS_RUN),
    templates: informer(ANALYSIS_TEMPLATE),
    ...(clusterScope
      ? {
          clusterTemplates: manager.informer<AnalysisTemplate>(CLUSTER_ANALYSIS_TEMPLATE, {
            dropManagedFields: true,
          }),
        }
      : {}),
    secrets: informer(SECRETS, true),
  };
}

/** Reads from the informers; our writes go back into the informer of their kind. */
export function informerCache(i: RolloutInformers): RolloutCache {
  const byResource = new Map<string, Informer<KubeObject>>(
    [i.rollouts, i.replicaSets, i.services, i.ingresses, i.deployments, i.runs].map((inf) => [
      inf.resource.resource,
      inf as unknown as Informer<KubeObject>,
    ]),
  );
  return {
    rollout: (ns, name) => i.rollouts.get(ns, name),
    replicaSets: (ns) => i.replicaSets.list(ns),
    service: (ns, name) => i.services.get(ns, name),
    ingress: (ns, name) => i.ingresses.get(ns, name),
    deployment: (ns, name) => i.deployments.get(ns, name),
    analysisRuns: (ns) => i.runs.list(ns),
    analysisTemplate: (ns, name) => i.templates.get(ns, name),
    clusterAnalysisTemplate: (name) => i.clusterTemplates?.get('', name),
    secretExists: (ns, name) => i.secrets.get(ns, name) !== undefined,
    written: (resource, obj) => byResource.get(resource.resource)?.written(obj),
  };
}

export function setupRolloutController(
  manager: Manager,
  options: RolloutControllerOptions = {},
): RolloutReconciler {
  const informers = rolloutInformers(manager, options.namespace ?? '', options.clusterScope ?? true);
  const {
    rollouts,
    replicaSets,
    services,
    ingresses,
    deployments,
    runs,
    templates,
    clusterTemplates,
    secrets,
  } = informers;
  const cache = informerCache(informers);
  const events = manager.eventRecorder('kube-actions.dev/rollout-controller');
  const logger = manager.logger.child({ controller: 'rollout' });
  const reconciler = new RolloutReconciler({ client: manager.client, cache, events, logger });
  const controller = manager.controller({
    name: 'rollout',
    reconciler: { reconcile: (req, ctx) => reconciler.reconcile(req, ctx) },
    maxConcurrentReconciles: options.maxConcurrentReconciles ?? 10,
  });
  const owner = enqueueOwner({ apiVersion: ROLLOUT.apiVersion, kind: 'Rollout' });
  controller.watch(rollouts, undefined, rolloutChanged());
  controller.watch(replicaSets, owner);
  // A run changing phase moves its rollout on (status-only updates: no generation filter here).
  controller.watch(runs, owner);

  /** The Rollouts in the object's namespace (all, for a cluster-scoped one) naming it, plus the invalid ones. */
  const referencing =
    (pick: (refs: RolloutReferences) => string[], alsoInvalid: boolean) =>
    (obj: KubeObject): Request[] => {
      const name = obj.metadata?.name;
      const ns = obj.metadata?.namespace;
      return rollouts
        .list(ns || undefined)
        .filter(
          (ro) =>
            (name !== undefined && pick(referencesOf(ro)).includes(name)) || (alsoInvalid && invalid(ro)),
        )
        .map((ro) => ({ namespace: ro.metadata.namespace, name: ro.metadata.name }));
    };
  controller.watch(
    services,
    referencing((r) => r.services, false),
  );
  controller.watch(
    ingresses,
    referencing((r) => r.ingresses, false),
  );
  // A Deployment a workloadRef points at: its template changes start a rollout.
  controller.watch(
    deployments,
    referencing((r) => (r.deployment ? [r.deployment] : []), false),
  );
  // Templates nest, and Secrets are named by templates: an InvalidSpec rollout may be waiting on either.
  controller.watch(
    templates,
    referencing((r) => r.templates, true),
  );
  if (clusterTemplates)
    controller.watch(
      clusterTemplates,
      referencing((r) => r.clusterTemplates, true),
    );
  controller.watch(
    secrets,
    referencing(() => [], true),
    {
      // Secrets change often (service account tokens, TLS renewals); only their coming and going matters.
      update: () => false,
    },
  );
  return reconciler;
}
