// Wires the Application reconciler into a Manager: the Application informer (spec changes, refresh
// requests, deletions), the managed objects' watches (drift wakes the owning application), the
// Git webhook (a push wakes the applications following that branch) and repository credentials
// from Secrets labelled as Argo CD labels them.
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ResourceManager } from '../../core/kube/apply.ts';
import { RESTMapper } from '../../core/kube/discovery.ts';
import type { KubeResource } from '../../core/kube/resource.ts';
import type { GitCredentials } from '../../core/gitops/git.ts';
import { RepoCache } from '../../core/gitops/repo-cache.ts';
import { directoryCache } from '../../core/render/cache.ts';
import type { Controller, Predicate } from '../runtime/controller.ts';
import type { EventSource, InformerHandlers } from '../runtime/informer.ts';
import type { Manager } from '../runtime/manager.ts';
import { OwnWrites } from '../runtime/own-writes.ts';
import { PatchType } from '../../core/kube/client.ts';
import { resourcePath, type KubeObject, type Request } from '../../core/kube/objects.ts';
import { LiveObjects, owningApplication } from './live.ts';
import {
  Clusters,
  IN_CLUSTER_NAME,
  IN_CLUSTER_SERVER,
  namesCluster,
  parseClusterSecret,
} from './clusters.ts';
import { Comparer } from './compare.ts';
import type { Backoff } from './policy.ts';
import { ApplicationReconciler } from './reconciler.ts';
import { INSTANCE_LABEL, ManifestSource } from './source.ts';
import { APPLICATION, REFRESH_ANNOTATION, sourcesOf, type Application } from './types.ts';
import { normalizeRepoURL, pushMatches, webhookHandler, type PushEvent } from './webhook.ts';
import { HelmRepositories } from '../../core/render/helm-repository.ts';

/** Whether credentials for `secretURL` may be sent to `repoURL`. */
export function credentialsMatch(mode: 'exact' | 'prefix', secretURL: string, repoURL: string): boolean {
  let a: URL;
  let b: URL;
  try {
    a = new URL(secretURL);
    b = new URL(repoURL);
  } catch {
    // scp-like ssh URLs: compare normalised, exactly.
    return normalizeRepoURL(secretURL) === normalizeRepoURL(repoURL) && mode === 'exact';
  }
  if (a.protocol !== b.protocol || a.host.toLowerCase() !== b.host.toLowerCase()) return false;
  const path = (u: URL) => u.pathname.replace(/\.git$/, '').replace(/\/+$/, '');
  if (mode === 'exact') return path(a) === path(b);
  const prefix = path(a);
  return prefix === '' || path(b) === prefix || path(b).startsWith(`${prefix}/`);
}

export interface ApplicationControllerOptions {
  /** Watch Applications in this namespace only; empty: all namespaces. */
  namespace?: string;
  /** Where repository credentials (Secrets) are read from: the controller's own namespace. */
  credentialsNamespace?: string;
  /** Mirrors, checked-out commits and the render cache. */
  cacheDir?: string;
  pollIntervalMs?: number;
  maxConcurrentReconciles?: number;
  /** The webhook's shared secret; empty disables the webhook. */
  webhookSecret?: string;
  /** Largest webhook body read (see webhook.ts). */
  webhookMaxBodyBytes?: number;
  /** How long one wave of a sync may wait for its hooks and objects (the reconciler's default: 5 min). */
  waveTimeoutMs?: number;
  /** How soon to look again while something progresses (the reconciler's default: 2 s). */
  progressingRequeueMs?: number;
  /** Self-heal backoff; Argo CD's defaults (2 s, ×3, at most 5 min) when omitted. */
  selfHealBackoff?: Backoff;
  /**
   * A namespace-scoped install (Argo CD's namespace-install): the controller may touch only this
   * namespace, so Applications deploy only there, never cluster-scoped objects, and managed
   * objects are watched there alone (a cluster-wide watch would be forbidden).
   */
  managedNamespace?: string;
}

/** An event source the controller itself feeds: webhook refreshes and managed-object drift. */
export class Trigger implements EventSource<KubeObject> {
  readonly name = 'triggers';
  private readonly handlers = new Set<InformerHandlers<KubeObject>>();

  addHandlers(handlers: InformerHandlers<KubeObject>): () => void {
    this.handlers.add(handlers);
    return () => this.handlers.delete(handlers);
  }
  hasSynced(): boolean {
    return true;
  }
  waitForSync(): Promise<void> {
    return Promise.resolve();
  }
  fire(request: Request): void {
    const obj: KubeObject = { metadata: { namespace: request.namespace, name: request.name } };
    for (const h of this.handlers) h.onUpdate?.(obj, obj, { resync: false });
  }
}

/** Reconcile on spec changes (generation), refresh requests, and deletion; not on our own status writes. */
function applicationChanged(): Predicate<Application> {
  return {
    update: (oldApp, newApp, info) =>
      info.resync ||
      oldApp.metadata.generation !== newApp.metadata.generation ||
      newApp.metadata.annotations?.[REFRESH_ANNOTATION] !== undefined ||
      (newApp.metadata.deletionTimestamp !== undefined && oldApp.metadata.deletionTimestamp === undefined),
  };
}

export interface ApplicationController {
  controller: Controller;
  reconciler: ApplicationReconciler;
  repos: RepoCache;
  source: ManifestSource;
  /** Handles POSTs of Git push webhooks. */
  webhook: ReturnType<typeof webhookHandler>;
  /** Refreshes the applications a push concerns; returns how many. */
  refresh: (event: PushEvent) => Promise<number>;
}

export function setupApplicationController(
  manager: Manager,
  options: ApplicationControllerOptions = {},
): ApplicationController {
  const client = manager.client;
  const cacheDir = options.cacheDir ?? join(tmpdir(), 'kube-actions-controller');
  const pollIntervalMs = options.pollIntervalMs ?? 180_000;
  // Without managedFields, which nothing reads; the ApplicationSet controller shares it.
  const apps = manager.informer<Application & KubeObject>(APPLICATION, {
    namespace: options.namespace ?? '',
    dropManagedFields: true,
  });
  const trigger = new Trigger();

  const secrets = options.credentialsNamespace
    ? manager.informer<KubeObject & { data?: Record<string, string> }>(
        { apiVersion: 'v1', resource: 'secrets' },
        {
          namespace: options.credentialsNamespace,
          labelSelector: 'argocd.argoproj.io/secret-type in (repository,repo-creds)',
        },
      )
    : undefined;
  const credentials = async (repoURL: string): Promise<GitCredentials | undefined> => {
    if (!secrets) return undefined;
    await secrets.waitForSync();
    const decode = (v: string | undefined) => (v ? Buffer.from(v, 'base64').toString('utf8') : '');
    // An exact `repository` secret wins over the longest matching `repo-creds` URL prefix (Argo
    // CD). Scheme and host must match exactly and a prefix must end at a path boundary, so a
    // token never goes to another host or over plain HTTP when it was meant for HTTPS.
    const candidates = secrets
      .list()
      .map((s) => ({
        type: s.metadata?.labels?.['argocd.argoproj.io/secret-type'],
        url: decode(s.data?.url),
        username: decode(s.data?.username),
        password: decode(s.data?.password),
      }))
      .filter(
        (c) => c.password && credentialsMatch(c.type === 'repository' ? 'exact' : 'prefix', c.url, repoURL),
      )
      .sort((a, b) =>
        a.type === 'repository' ? -1 : b.type === 'repository' ? 1 : b.url.length - a.url.length,
      );
    const best = candidates[0];
    return best ? { ...(best.username ? { username: best.username } : {}), token: best.password } : undefined;
  };

  const counter = (name: string, help: string) => manager.metrics.counter({ name, help, labelNames: [] });
  const lsRemotes = counter(
    'kube_actions_git_ls_remote_total',
    'git ls-remote calls (one per repository per poll interval, or per webhook).',
  );
  const renders = counter('kube_actions_renders_total', 'Renders of an application source (cache misses).');
  const dryRuns = counter(
    'kube_actions_dry_runs_total',
    'Server-side dry-runs sent to compare objects (cache misses).',
  );
  const repos = new RepoCache({
    dir: join(cacheDir, 'git'),
    refreshIntervalMs: pollIntervalMs,
    credentials,
    onLsRemote: () => lsRemotes.inc({}),
  });
  const source = new ManifestSource(repos, {
    renderCache: directoryCache(join(cacheDir, 'render')),
    onRender: () => renders.inc({}),
    // Argo CD's repository Secrets serve Helm repositories too (`type: helm`): the same lookup.
    charts: new HelmRepositories({
      dir: join(cacheDir, 'helm'),
      credentials: async (repoURL) => {
        const c = await credentials(repoURL);
        return c ? { ...(c.username ? { username: c.username } : {}), password: c.token } : undefined;
      },
    }),
  });
  const mapper = new RESTMapper(client);
  const resources = new ResourceManager(client, mapper);
  const onManagedChange = (obj: KubeResource) => {
    const owner = owningApplication(obj);
    if (owner) trigger.fire(owner);
  };
  const live = new LiveObjects({
    informer: (mapping) =>
      manager.informer<KubeResource>(mapping, {
        labelSelector: INSTANCE_LABEL,
        ...(options.managedNamespace ? { namespace: options.managedNamespace } : {}),
      }),
    onChange: onManagedChange,
  });
  // Other clusters, from Argo CD's cluster Secrets in the controller's namespace.
  const clusterSecrets = options.credentialsNamespace
    ? manager.informer<KubeObject & { data?: Record<string, string> }>(
        { apiVersion: 'v1', resource: 'secrets' },
        { namespace: options.credentialsNamespace, labelSelector: 'argocd.argoproj.io/secret-type=cluster' },
      )
    : undefined;
  const clusters = new Clusters({
    local: {
      name: IN_CLUSTER_NAME,
      server: IN_CLUSTER_SERVER,
      client,
      mapper,
      resources,
      live,
      comparer: new Comparer(resources, (n) => dryRuns.inc({}, n)),
    },
    secrets: async () => {
      if (!clusterSecrets) return [];
      await clusterSecrets.waitForSync();
      return clusterSecrets.list();
    },
    writesFollow: client,
    onChange: onManagedChange,
    onDryRuns: (n) => dryRuns.inc({}, n),
    ...(options.managedNamespace ? { managedNamespace: options.managedNamespace } : {}),
  });
  manager.onStop(() => clusters.stop());

  // The cache may not have caught up with our own last write yet; then the API is asked instead.
  const ownWrites = new OwnWrites<Application & KubeObject>(apps, client, APPLICATION);
  const events = manager.eventRecorder('kube-actions.dev/application-controller');
  const reconciler = new ApplicationReconciler({
    client,
    events,
    resources,
    mapper,
    repos,
    source,
    live,
    clusters,
    logger: manager.logger.child({ controller: 'application' }),
    pollIntervalMs,
    waveTimeoutMs: options.waveTimeoutMs,
    progressingRequeueMs: options.progressingRequeueMs,
    selfHealBackoff: options.selfHealBackoff,
    ...(options.managedNamespace ? { managedNamespace: options.managedNamespace } : {}),
    onDryRuns: (n) => dryRuns.inc({}, n),
    getApplication: (req) => {
      // Managed objects' tracking ids wake applications too, and one may name an Application in a
      // namespace this controller does not watch: that one is another controller's.
      if (options.namespace && req.namespace !== options.namespace) return Promise.resolve(undefined);
      return ownWrites.get(req.namespace, req.name);
    },
    onWrite: (app) => ownWrites.wrote(app),
  });

  const controller = manager.controller({
    name: 'application',
    // Each reconcile gets the runtime's signal and logger: concurrent reconciles share neither.
    reconciler: { reconcile: (req, ctx) => reconciler.reconcile(req, { signal: ctx.signal, log: ctx.log }) },
    maxConcurrentReconciles: options.maxConcurrentReconciles ?? 10,
  });
  controller.watch(apps, undefined, applicationChanged());
  controller.watch(trigger);
  // A cluster Secret added, changed or removed: the applications deploying there look again.
  clusterSecrets?.addHandlers({
    onAdd: (s, info) => !info.initialList && wakeDeployingTo(s),
    onUpdate: (_old, s) => wakeDeployingTo(s),
    onDelete: (s) => wakeDeployingTo(s),
  });
  function wakeDeployingTo(secret: KubeObject & { data?: Record<string, string> }): void {
    const cluster = parseClusterSecret(secret);
    for (const app of apps.list()) {
      // A Secret that cannot be parsed names no cluster for sure: every application looks again.
      if (typeof cluster === 'string' || namesCluster(app.spec.destination ?? {}, cluster))
        trigger.fire({ namespace: app.metadata.namespace, name: app.metadata.name });
    }
  }

  // On the leader a push wakes the applications directly. Any other replica (a Service spreads
  // webhooks over all of them) asks for a refresh the way Argo CD's webhook does: with the refresh
  // annotation, which the leader's watch sees.
  const refresh = async (event: PushEvent): Promise<number> => {
    // Any of an application's sources (a ref source's values files change the render too).
    const pushed = (app: Application) =>
      sourcesOf(app).filter((src) => pushMatches(event, src.repoURL, src.targetRevision));
    const matching = apps.list().filter((app) => pushed(app).length > 0);
    const prefetched = new Set<string>();
    for (const app of matching) {
      if (manager.isLeader()) {
        for (const src of pushed(app)) {
          repos.invalidate(src.repoURL);
          // A branch push names its new head (a tag push may name a tag object): fetch it now,
          // beside the ls-remote the sync makes, rather than after it.
          if (event.after && event.ref.startsWith('refs/heads/') && !prefetched.has(src.repoURL)) {
            prefetched.add(src.repoURL);
            void repos.prefetch(src.repoURL, event.after);
          }
        }
        trigger.fire({ namespace: app.metadata.namespace, name: app.metadata.name });
      } else {
        // Not the controller's state but a request to the leader, as a user's `argocd app get
        // --refresh` is: so not subject to the write guard that keeps a follower from writing.
        await client.request('PATCH', resourcePath(APPLICATION, app.metadata.namespace, app.metadata.name), {
          body: { metadata: { annotations: { [REFRESH_ANNOTATION]: 'normal' } } },
          contentType: PatchType.merge,
          unguarded: true,
        });
      }
    }
    return matching.length;
  };
  const webhook = webhookHandler({
    secret: options.webhookSecret ?? '',
    onPush: refresh,
    ...(options.webhookMaxBodyBytes ? { maxBodyBytes: options.webhookMaxBodyBytes } : {}),
  });
  return { controller, reconciler, repos, source, webhook, refresh };
}
