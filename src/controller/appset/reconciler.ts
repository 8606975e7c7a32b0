// The ApplicationSet reconciler: gather (the set and its namespace's Applications from the
// caches, the generators' input from Git), decide (decide.ts, pure), act (create, update, delete
// Applications; then the status). State lives only in the cluster: the generated Applications
// carry a controller ownerReference to the set, so a restarted controller finds them again.
// https://argo-cd.readthedocs.io/en/stable/operator-manual/applicationset/
import { isAlreadyExists, isConflict, isNotFound, PatchType } from '../../core/kube/client.ts';
import type { KubeClient } from '../../core/kube/client.ts';
import { resourcePath, type Request } from '../../core/kube/objects.ts';
import type { RepoCache } from '../../core/gitops/repo-cache.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Logger } from '../runtime/log.ts';
import { APPLICATION, type Application } from '../sync/types.ts';
import {
  allowsDelete,
  applicationSetStatus,
  canonical,
  goTemplateOptions,
  isOwnedBy,
  ORPHAN_FINALIZER,
  planApplications,
  renderApplications,
  syncPolicy,
  unsupportedFields,
} from './decide.ts';
import {
  GeneratorError,
  generatorKind,
  gitDirectoryParams,
  gitFileMatcher,
  gitFileParams,
  listParams,
  MAX_PARAMETER_SETS,
  type GenerateOptions,
} from './generators.ts';
import { TemplateError, type Params } from './template.ts';
import { listTree, readTreeFile } from './tree.ts';
import { APPLICATIONSET, type ApplicationSet, type Generator } from './types.ts';

export interface ApplicationSetReconcilerOptions {
  client: KubeClient;
  repos: RepoCache;
  events?: EventRecorder;
  logger: Logger;
  getApplicationSet: (req: Request) => Promise<ApplicationSet | undefined> | ApplicationSet | undefined;
  /** The Applications of a namespace, from the cache. */
  listApplications: (namespace: string) => Application[];
  /** How often a set with git generators looks at Git again (Argo CD's requeueAfterSeconds: 3 min). */
  pollIntervalMs?: number;
  /** Told of each status write (the cache may lag behind it). */
  onWrite?: (appset: ApplicationSet) => void;
}

export interface ApplicationSetReconcileResult {
  requeueAfter?: number;
}

export class ApplicationSetReconciler {
  private readonly o: ApplicationSetReconcilerOptions;

  constructor(options: ApplicationSetReconcilerOptions) {
    this.o = options;
  }

  async reconcile(
    req: Request,
    ctx: { signal?: AbortSignal; log?: Logger } = {},
  ): Promise<ApplicationSetReconcileResult> {
    const log = ctx.log ?? this.o.logger.child({ applicationset: `${req.namespace}/${req.name}` });
    const appset = await this.o.getApplicationSet(req);
    if (!appset) return {};
    const live = this.o.listApplications(appset.metadata.namespace);
    if (appset.metadata.deletionTimestamp) {
      await this.finalize(appset, live);
      return {};
    }
    await this.keepFinalizer(appset);

    // Gather: each generator's parameter sets; a generator that fails stops the round.
    // Git is looked at again every poll interval, or a generator's requeueAfterSeconds (Argo CD).
    const poll = this.o.pollIntervalMs ?? 180_000;
    const intervals = (appset.spec.generators ?? [])
      .filter((g) => g.git)
      .map((g) => (g.git!.requeueAfterSeconds ? Math.max(1, g.git!.requeueAfterSeconds) * 1000 : poll));
    const requeue = intervals.length ? { requeueAfter: Math.min(...intervals) } : {};
    let generated: { generator: Generator; params: Params[] }[];
    try {
      generated = await this.generate(appset, ctx.signal);
    } catch (err) {
      if (!(err instanceof GeneratorError) && !(err instanceof TemplateError) && !isSourceError(err))
        throw err;
      const message = (err as Error).message;
      log.warn('generating parameters failed', { error: message });
      void this.o.events?.record(appset, 'Warning', 'ParametersGenerationError', message, 'Generate');
      await this.writeStatus(
        appset,
        applicationSetStatus(
          appset.status,
          { generatorError: message, errors: [], writeErrors: [], desired: [], live },
          new Date(),
        ),
      );
      return { requeueAfter: this.o.pollIntervalMs ?? 180_000 };
    }

    // Decide.
    const rendered = renderApplications(appset, generated);
    const plan = planApplications(appset, rendered.applications, live, rendered.errors);

    // Act.
    const writeErrors: string[] = [];
    const write = async (what: string, app: Application, call: () => Promise<unknown>) => {
      ctx.signal?.throwIfAborted();
      try {
        await call();
        log.info(`${what} application`, { application: app.metadata.name });
        void this.o.events?.record(
          appset,
          'Normal',
          `${what[0]!.toUpperCase()}${what.slice(1)}`,
          `${what} Application ${app.metadata.name}`,
        );
      } catch (err) {
        // A conflict means the cache was behind: the next round reads it fresh and tries again.
        if (isConflict(err) || isAlreadyExists(err) || isNotFound(err)) {
          writeErrors.push(`application ${app.metadata.name}: ${(err as Error).message}`);
          return;
        }
        throw err;
      }
    };
    for (const app of plan.create)
      await write('created', app, () => this.o.client.create(APPLICATION, app as never));
    for (const app of plan.update)
      await write('updated', app, () => this.o.client.update(APPLICATION, app as never));
    for (const app of plan.delete)
      await write('deleted', app, () =>
        this.o.client.request(
          'DELETE',
          resourcePath(APPLICATION, app.metadata.namespace, app.metadata.name),
          {
            // Only the Application seen: one recreated under the same name since is not deleted.
            body: { kind: 'DeleteOptions', apiVersion: 'v1', preconditions: { uid: app.metadata.uid } },
          },
        ),
      );
    if (plan.errors.length) {
      log.warn('some applications were not generated', { errors: plan.errors });
      void this.o.events?.record(
        appset,
        'Warning',
        'ApplicationValidationError',
        plan.errors.join('; '),
        'Generate',
      );
    }
    await this.writeStatus(
      appset,
      applicationSetStatus(
        appset.status,
        {
          errors: plan.errors,
          writeErrors,
          desired: rendered.applications,
          live: this.o.listApplications(appset.metadata.namespace),
        },
        new Date(),
      ),
    );
    if (writeErrors.length)
      throw new Error(`ApplicationSet ${appset.metadata.name}: ${writeErrors.join('; ')}`);
    // Duplicate names and other errors are looked at again later too (Argo CD: 3 minutes).
    return plan.errors.length ? { requeueAfter: this.o.pollIntervalMs ?? 180_000 } : requeue;
  }

  private async generate(
    appset: ApplicationSet,
    signal?: AbortSignal,
  ): Promise<{ generator: Generator; params: Params[] }[]> {
    const unsupported = unsupportedFields(appset);
    if (unsupported.length)
      throw new GeneratorError(
        `not supported by this controller: ${unsupported.join(', ')} (nothing was generated)`,
      );
    const options: GenerateOptions = {
      goTemplate: appset.spec.goTemplate === true,
      goTemplateOptions: goTemplateOptions(appset),
    };
    const out: { generator: Generator; params: Params[] }[] = [];
    let total = 0;
    for (const generator of appset.spec.generators ?? []) {
      const kind = generatorKind(generator);
      let params: Params[];
      if (kind === 'list') params = listParams(generator.list!, options);
      else params = await this.gitParams(generator.git!, options, signal);
      total += params.length;
      if (total > MAX_PARAMETER_SETS)
        throw new GeneratorError(`the generators produced more than ${MAX_PARAMETER_SETS} parameter sets`);
      out.push({ generator, params });
    }
    return out;
  }

  private async gitParams(
    git: NonNullable<Generator['git']>,
    options: GenerateOptions,
    signal?: AbortSignal,
  ): Promise<Params[]> {
    if (!git.repoURL) throw new GeneratorError('a git generator needs repoURL');
    const hasDirs = (git.directories?.length ?? 0) > 0;
    const hasFiles = (git.files?.length ?? 0) > 0;
    if (hasDirs === hasFiles) throw new GeneratorError('a git generator needs either directories or files');
    const commit = await this.o.repos.resolve(git.repoURL, git.revision ?? 'HEAD', false, signal);
    return this.o.repos.withCheckout(
      git.repoURL,
      commit,
      async (dir) => {
        const tree = await listTree(dir);
        if (hasDirs) return gitDirectoryParams(git, tree.directories, options);
        const keep = gitFileMatcher(git);
        const files: { path: string; content: string }[] = [];
        for (const path of tree.files.filter(keep))
          files.push({ path, content: await readTreeFile(dir, path) });
        return gitFileParams(git, files, options);
      },
      signal,
    );
  }

  /**
   * A set whose policy forbids deleting Applications carries ORPHAN_FINALIZER, so that its own
   * deletion can take the ownerReferences off them first (the garbage collector would delete
   * them otherwise); one that allows it needs none.
   */
  private async keepFinalizer(appset: ApplicationSet): Promise<void> {
    const finalizers = appset.metadata.finalizers ?? [];
    const want = !allowsDelete(syncPolicy(appset));
    if (want === finalizers.includes(ORPHAN_FINALIZER)) return;
    const next = want ? [...finalizers, ORPHAN_FINALIZER] : finalizers.filter((f) => f !== ORPHAN_FINALIZER);
    await this.patchFinalizers(appset, next);
  }

  private async finalize(appset: ApplicationSet, live: Application[]): Promise<void> {
    if (!(appset.metadata.finalizers ?? []).includes(ORPHAN_FINALIZER)) return;
    for (const app of live.filter((a) => isOwnedBy(a, appset))) {
      const ops = [
        { op: 'test', path: '/metadata/uid', value: app.metadata.uid },
        {
          op: 'replace',
          path: '/metadata/ownerReferences',
          value: (app.metadata.ownerReferences ?? []).filter((r) => r.uid !== appset.metadata.uid),
        },
      ];
      await this.o.client
        .request('PATCH', resourcePath(APPLICATION, app.metadata.namespace, app.metadata.name), {
          body: ops,
          contentType: PatchType.json,
        })
        .catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
    }
    await this.patchFinalizers(
      appset,
      (appset.metadata.finalizers ?? []).filter((f) => f !== ORPHAN_FINALIZER),
    );
  }

  private async patchFinalizers(appset: ApplicationSet, finalizers: string[]): Promise<void> {
    const ops = [
      { op: 'test', path: '/metadata/resourceVersion', value: appset.metadata.resourceVersion },
      { op: 'add', path: '/metadata/finalizers', value: finalizers },
    ];
    const written = await this.o.client.request<ApplicationSet>(
      'PATCH',
      resourcePath(APPLICATIONSET, appset.metadata.namespace, appset.metadata.name),
      { body: ops, contentType: PatchType.json },
    );
    appset.metadata.finalizers = finalizers;
    appset.metadata.resourceVersion = written.metadata.resourceVersion;
    this.o.onWrite?.(written);
  }

  /** Replaces the status only when it changed. */
  private async writeStatus(
    appset: ApplicationSet,
    status: NonNullable<ApplicationSet['status']>,
  ): Promise<void> {
    if (canonical(status) === canonical(appset.status ?? {})) return;
    const written = await this.o.client.request<ApplicationSet>(
      'PATCH',
      resourcePath(APPLICATIONSET, appset.metadata.namespace, appset.metadata.name, 'status'),
      { body: [{ op: 'add', path: '/status', value: status }], contentType: PatchType.json },
    );
    this.o.onWrite?.(written);
  }
}

function isSourceError(err: unknown): boolean {
  return err instanceof Error && err.name === 'SourceError';
}
