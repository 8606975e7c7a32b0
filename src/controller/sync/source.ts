// An application's desired state: its source at a commit, rendered with the real helm/kustomize
// through src/core/render, and remembered per (commit, source settings) so an idle resync renders
// nothing. Tracking metadata is added here, so everything applied carries the application's identity.
import { abortable } from '../../core/abort.ts';
import { jsonBytes, SizedLru } from '../../core/lru.ts';
import { parse, stringify } from 'yaml';
import { SourceError, type RepoCache } from '../../core/gitops/repo-cache.ts';
import type { RenderCache } from '../../core/render/cache.ts';
import type { HelmRepositories } from '../../core/render/helm-repository.ts';
import { render, RenderError, type RenderOptions } from '../../core/render/render.ts';
import type { KubeResource } from '../../core/kube/resource.ts';
import { apiGroup } from '../../core/kube/resource.ts';
import { readFile, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { resolveInside } from '../../core/fs/paths.ts';
import { refValueFile, type Application, type ApplicationSource } from './types.ts';

/** A source a `$ref/...` values file names: its repository at the commit resolved for it. */
export interface SourceRef {
  repoURL: string;
  revision: string;
}

/** Largest values file read from another source. */
const MAX_VALUES_BYTES = 4 * 1024 * 1024;

export const INSTANCE_LABEL = 'kube-actions.dev/instance';
export const TRACKING_ANNOTATION = 'kube-actions.dev/tracking-id';

export interface DesiredState {
  revision: string;
  sourceType: string;
  objects: KubeResource[];
  /** Source settings this controller does not act on, reported as a condition. */
  unsupported: string[];
}

/** The value of the instance label: the name when it is a valid label value, else a digest. */
export function instanceLabel(app: Application): string {
  const name = app.metadata.name;
  return name.length <= 63 ? name : `${name.slice(0, 50)}-${fnv(name)}`;
}

/** Argo CD's tracking id format, `<app>:<group>/<kind>:<namespace>/<name>`, with the app's namespace. */
export function trackingId(
  app: Application,
  obj: { apiVersion: string; kind: string },
  namespace: string,
  name: string,
): string {
  return `${app.metadata.namespace}_${app.metadata.name}:${apiGroup(obj.apiVersion)}/${obj.kind}:${namespace}/${name}`;
}

/** Whether a live object carries this application's tracking id (and is therefore ours to prune). */
export function isTrackedBy(app: Application, live: KubeResource, namespace: string): boolean {
  const id = live.metadata.annotations?.[TRACKING_ANNOTATION];
  return id === trackingId(app, live, namespace, live.metadata.name ?? '');
}

export class ManifestSource {
  private readonly repos: RepoCache;
  private readonly renderCache: RenderCache | undefined;
  /** Renders in flight, shared by every caller asking for the same one. */
  private readonly rendering = new Map<string, Promise<Omit<DesiredState, 'revision'>>>();
  /** Finished renders, kept under a memory budget (the least recently used go first). */
  private readonly rendered: SizedLru<string, Omit<DesiredState, 'revision'>>;
  /** Renders run (cache misses), for tests and benchmarks. */
  renders = 0;

  private readonly onRender: (() => void) | undefined;

  /** Charts from Helm repositories (`source.chart`); absent, such a source is refused. */
  readonly charts: HelmRepositories | undefined;

  constructor(
    repos: RepoCache,
    options: {
      renderCache?: RenderCache;
      maxBytes?: number;
      onRender?: () => void;
      charts?: HelmRepositories;
    } = {},
  ) {
    this.repos = repos;
    this.charts = options.charts;
    this.onRender = options.onRender;
    this.renderCache = options.renderCache;
    this.rendered = new SizedLru(options.maxBytes ?? 64 * 1024 * 1024, (state) => jsonBytes(state.objects));
  }

  /**
   * `refs`: the other sources of a multi-source application that have a `ref`, at the commits
   * resolved for them, for `$ref/...` values files.
   */
  async desired(
    app: Application,
    revision: string,
    signal?: AbortSignal,
    refs: Readonly<Record<string, SourceRef>> = {},
  ): Promise<DesiredState> {
    const source = app.spec.source!;
    // Only the refs its values files name: another ref source's new commit changes nothing here.
    const used = Object.fromEntries(
      Object.entries(refs).filter(([name]) =>
        source.helm?.valueFiles?.some((f) => f.startsWith(`$${name}/`)),
      ),
    );
    const key = JSON.stringify([
      source,
      revision,
      app.metadata.namespace,
      app.metadata.name,
      app.spec.destination.namespace,
      used,
    ]);
    const done = this.rendered.get(key);
    let pending = done ? Promise.resolve(done) : this.rendering.get(key);
    if (!pending) {
      const started = this.render(app, revision, used);
      pending = started;
      this.rendering.set(key, started);
      // A failure is not remembered: the next reconcile tries again (the error may be transient).
      started.then(
        (state) => {
          this.rendering.delete(key);
          this.rendered.set(key, state);
        },
        () => this.rendering.delete(key),
      );
    }
    // Shared by every application rendering the same thing: a cancelled caller only stops waiting.
    const state = await abortable(pending, signal);
    // Each caller gets its own copies: the sync adds metadata to them.
    return { ...state, revision, objects: structuredClone(state.objects) };
  }

  private async render(
    app: Application,
    revision: string,
    refs: Readonly<Record<string, SourceRef>>,
  ): Promise<Omit<DesiredState, 'revision'>> {
    this.renders++;
    this.onRender?.();
    const source = app.spec.source!;
    // Fields that change the render are refused up front (see the reconciler's validate).
    const unsupported: string[] = [];
    // Read before the source's own checkout is held: a ref is often the same repository and commit.
    const valueFiles = await this.valueFiles(source, refs);
    if (source.chart) {
      // A chart from a Helm repository: `revision` is the version the reconciler resolved.
      if (!this.charts) throw new SourceError('this controller has no Helm repository support configured');
      const chart = await this.charts.resolve(source.repoURL, source.chart, revision, false);
      const dir = await this.charts.chartDir(source.repoURL, chart);
      const result = await render(this.renderOptions(app, dir, source.chart, valueFiles));
      return { sourceType: result.type, objects: result.objects, unsupported };
    }
    return this.repos.withCheckout(source.repoURL, revision, async (workspace) => {
      const result = await render(this.renderOptions(app, workspace, source.path || '.', valueFiles));
      return { sourceType: result.type, objects: result.objects, unsupported };
    });
  }

  /**
   * helm.valueFiles with each `$ref/path` (Argo CD's multiple sources) read from the root of the
   * source whose `ref` it names, inside that checkout (no `..` or symlink leads out of it).
   */
  private async valueFiles(
    source: ApplicationSource,
    refs: Readonly<Record<string, SourceRef>>,
  ): Promise<(string | { from: string; content: string })[] | undefined> {
    const files = source.helm?.valueFiles;
    if (!files?.some((f) => f.startsWith('$'))) return files;
    const out: (string | { from: string; content: string })[] = [];
    for (const f of files) {
      // Validation refuses malformed and unknown refs first; a library caller gets the same errors.
      const other = refValueFile(f);
      if (!other) out.push(f);
      else if (other === 'malformed')
        throw new RenderError(`helm.valueFiles: ${JSON.stringify(f)} is not $ref/path`);
      else {
        const ref = refs[other.ref];
        if (!ref) throw new RenderError(`helm.valueFiles: ${f} names no source with ref: ${other.ref}`);
        const content = await this.repos.withCheckout(ref.repoURL, ref.revision, async (root) => {
          let info: Stats;
          let file: string;
          try {
            file = await resolveInside(root, other.path, `values file ${f}`);
            info = await stat(file);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT')
              throw new RenderError(`values file ${f}: no such file in the source with ref: ${other.ref}`);
            // The controller's cache path says nothing to the user: name the source instead.
            throw new RenderError(
              (err as Error).message.replace(
                / the workspace .*$/,
                ` the checkout of the source with ref: ${other.ref}`,
              ),
            );
          }
          if (!info.isFile() || info.size > MAX_VALUES_BYTES)
            throw new RenderError(`values file ${f}: not a file of at most ${MAX_VALUES_BYTES} bytes`);
          return readFile(file, 'utf8');
        });
        out.push({ from: f, content });
      }
    }
    return out;
  }

  private renderOptions(
    app: Application,
    workspace: string,
    path: string,
    valueFiles: (string | { from: string; content: string })[] | undefined,
  ): RenderOptions {
    const source = app.spec.source!;
    {
      const helm = source.helm;
      const values = helmValues(helm?.values, helm?.valuesObject);
      return {
        workspace,
        path,
        ...(this.renderCache ? { cache: this.renderCache } : {}),
        helm: {
          // Argo CD's defaults: the release is named after the application, in its destination namespace.
          releaseName: helm?.releaseName || app.metadata.name,
          ...(app.spec.destination.namespace
            ? { namespace: helm?.namespace || app.spec.destination.namespace }
            : {}),
          ...(valueFiles ? { valueFiles } : {}),
          ...(values ? { values } : {}),
          ...(helm?.parameters?.length
            ? { set: helm.parameters.filter((p) => p.name).map((p) => `${p.name}=${p.value ?? ''}`) }
            : {}),
          ...(helm?.kubeVersion ? { kubeVersion: helm.kubeVersion } : {}),
          ...(helm?.apiVersions ? { apiVersions: helm.apiVersions } : {}),
        },
        directory: { recurse: source.directory?.recurse ?? false },
        ...(source.kustomize?.images?.length ? { images: source.kustomize.images } : {}),
      };
    }
  }
}

/** Adds the label and annotation that mark an object as this application's. */
export function track(app: Application, obj: KubeResource, namespace: string): KubeResource {
  const name = obj.metadata.name ?? '';
  return {
    ...obj,
    metadata: {
      ...obj.metadata,
      labels: { ...obj.metadata.labels, [INSTANCE_LABEL]: instanceLabel(app) },
      annotations: {
        ...obj.metadata.annotations,
        [TRACKING_ANNOTATION]: trackingId(app, obj, namespace, name),
      },
    },
  };
}

/** Inline values: `values` (YAML text) with `valuesObject` merged over it, as Argo CD gives it precedence. */
export function helmValues(
  values: string | undefined,
  valuesObject: Record<string, unknown> | undefined,
): string | undefined {
  if (!valuesObject) return values || undefined;
  let base: unknown = {};
  try {
    // The yaml library's default alias budget refuses a billion-laughs document, but with a
    // ReferenceError: a bad value of the application's own, reported like any other bad render.
    if (values) base = parse(values);
  } catch (err) {
    throw new RenderError(`spec.source.helm.values: ${(err as Error).message}`);
  }
  return stringify(deepMerge(isPlain(base) ? base : {}, valuesObject));
}

function isPlain(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isPlain(prev) && isPlain(v) ? deepMerge(prev, v) : v;
  }
  return out;
}

function fnv(s: string): string {
  let h = 0x811c9dc5;
  for (const c of s) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}
