// Wires the ApplicationSet reconciler into a Manager: the ApplicationSet informer (spec changes,
// deletions) and the Applications it generated (an edit, a deletion or a new sync or health
// status wakes the set that controls them: it reverts the edit, recreates, reports).
import { enqueueOwner, type Controller, type Predicate } from '../runtime/controller.ts';
import type { Manager } from '../runtime/manager.ts';
import type { KubeObject } from '../../core/kube/objects.ts';
import { OwnWrites } from '../runtime/own-writes.ts';
import type { RepoCache } from '../../core/gitops/repo-cache.ts';
import { APPLICATION, GROUP, type Application } from '../sync/types.ts';
import { ApplicationSetReconciler } from './reconciler.ts';
import { APPLICATIONSET, type ApplicationSet } from './types.ts';

export interface ApplicationSetControllerOptions {
  /** Watch ApplicationSets (and their Applications) in this namespace only; empty: all namespaces. */
  namespace?: string;
  /** The Git cache the Application controller uses too: one mirror per repository. */
  repos: RepoCache;
  pollIntervalMs?: number;
  maxConcurrentReconciles?: number;
}

export interface ApplicationSetController {
  controller: Controller;
  reconciler: ApplicationSetReconciler;
}

function appsetChanged(): Predicate<ApplicationSet & KubeObject> {
  return {
    update: (a, b, info) =>
      info.resync ||
      a.metadata.generation !== b.metadata.generation ||
      (b.metadata.deletionTimestamp !== undefined && a.metadata.deletionTimestamp === undefined),
  };
}

/** A generated Application's changes its set cares about: what it generates, and the states it reports. */
function generatedChanged(): Predicate<Application & KubeObject> {
  const reported = (x: Application) =>
    JSON.stringify([x.status?.sync?.status, x.status?.health?.status, x.metadata.deletionTimestamp]);
  return {
    update: (a, b, info) =>
      info.resync ||
      a.metadata.generation !== b.metadata.generation ||
      JSON.stringify([a.metadata.labels, a.metadata.annotations, a.metadata.ownerReferences]) !==
        JSON.stringify([b.metadata.labels, b.metadata.annotations, b.metadata.ownerReferences]) ||
      reported(a) !== reported(b),
  };
}

export function setupApplicationSetController(
  manager: Manager,
  options: ApplicationSetControllerOptions,
): ApplicationSetController {
  const client = manager.client;
  const namespace = options.namespace ?? '';
  const appsets = manager.informer<ApplicationSet & KubeObject>(APPLICATIONSET, {
    namespace,
    dropManagedFields: true,
  });
  // The same informer the Application controller reads (the manager shares one per selection:
  // the same options, without managedFields).
  const apps = manager.informer<Application & KubeObject>(APPLICATION, {
    namespace,
    dropManagedFields: true,
  });
  const events = manager.eventRecorder('kube-actions.dev/applicationset-controller');
  // The cache may lag behind our own last write; then the API is asked. The reconciler edits the
  // set it is given, so it gets a copy, never the cache's own.
  const ownWrites = new OwnWrites<ApplicationSet & KubeObject>(appsets, client, APPLICATIONSET, {
    clone: true,
  });
  const reconciler = new ApplicationSetReconciler({
    client,
    repos: options.repos,
    events,
    logger: manager.logger.child({ controller: 'applicationset' }),
    getApplicationSet: (req) => ownWrites.get(req.namespace, req.name),
    listApplications: (ns) => apps.list(ns),
    ...(options.pollIntervalMs ? { pollIntervalMs: options.pollIntervalMs } : {}),
    onWrite: (appset) => ownWrites.wrote(appset),
  });
  const controller = manager.controller({
    name: 'applicationset',
    reconciler: { reconcile: (req, ctx) => reconciler.reconcile(req, { signal: ctx.signal, log: ctx.log }) },
    maxConcurrentReconciles: options.maxConcurrentReconciles ?? 5,
  });
  controller.watch(appsets, undefined, appsetChanged());
  controller.watch(
    apps,
    enqueueOwner<Application & KubeObject>({ apiVersion: `${GROUP}/v1alpha1`, kind: 'ApplicationSet' }),
    generatedChanged(),
  );
  return { controller, reconciler };
}
