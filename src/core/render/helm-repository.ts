// Charts from HTTP(S) Helm repositories, as an Argo CD Application names them (`source.chart`,
// `repoURL`, `targetRevision` a version or a semver range):
// https://argo-cd.readthedocs.io/en/stable/user-guide/helm/. The repository's index.yaml says which
// versions exist and each one's digest; the chart archive is downloaded once per digest, checked
// against it, and unpacked into the cache, so a chart that did not change costs no network but
// the index, and that only when the application is refreshed (poll, webhook, refresh request).
//
// Charts in OCI registries (`oci://host/path`, or `host/path` with no scheme, as Argo CD names
// them with enableOCI: https://argo-cd.readthedocs.io/en/stable/user-guide/helm/#helm-oci-registry)
// are `<path>/<chart>` repositories whose tags are the versions (`+` written `_`, as Helm does):
// a range lists the tags, the manifest names the chart layer, and its digest keys the cache.
//
// Hostile input stays bounded: the index and an archive have size limits and a deadline, an
// archive member may not leave its directory, and a chart URL on another host gets no credentials.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, normalize, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import semver from 'semver';
import { extract } from 'tar-stream';
import { parse } from 'yaml';
import { RegistryClient, RegistryError, MEDIA_TYPES } from '../image/registry.ts';

/** Helm's media types for a chart in an OCI registry (helm.sh/helm/v3/pkg/registry). */
const HELM_CONFIG = 'application/vnd.cncf.helm.config.v1+json';
const HELM_CHART_LAYERS = new Set([
  'application/vnd.cncf.helm.chart.content.v1.tar+gzip',
  // Helm 3.0-3.7's experimental OCI support wrote this one.
  'application/tar+gzip',
]);

export const MAX_INDEX_BYTES = 32 * 1024 * 1024;
export const MAX_CHART_BYTES = 64 * 1024 * 1024;

export class HelmRepositoryError extends Error {
  override name = 'HelmRepositoryError';
}

export interface HelmCredentials {
  username?: string;
  password: string;
}

export interface ResolvedChart {
  /** The chart version chosen: the application's revision. */
  version: string;
  /** Where its archive is, absolute. */
  url: string;
  /** sha256 of the archive, from the index ('' when the index gives none). */
  digest: string;
  /** For a chart in an OCI registry: where its layer is. */
  oci?: { registry: string; repository: string };
}

/**
 * The registry and repository path of an OCI Helm repository URL, or undefined for an HTTP(S)
 * one: `oci://host[:port]/path` or `host[:port]/path` without a scheme.
 */
export function ociRepository(repoURL: string): { registry: string; path: string } | undefined {
  if (/^https?:\/\//i.test(repoURL)) return undefined;
  const rest = repoURL.replace(/^oci:\/\//i, '');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(rest)) return undefined;
  const slash = rest.indexOf('/');
  const registry = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash + 1).replace(/\/+$/, '');
  // A registry host (name or address, optional port) and repository path components as the
  // distribution spec allows them; anything else (a user@ part, spaces, `..`) is not one.
  if (
    !/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?$/i.test(registry) &&
    !/^\[[0-9a-f:]+\](:\d+)?$/i.test(registry)
  )
    return undefined;
  if (path && !/^[a-z0-9]+([._-][a-z0-9]+|__)*(\/[a-z0-9]+([._-][a-z0-9]+|__)*)*$/.test(path))
    return undefined;
  return { registry, path };
}

interface IndexEntry {
  version?: unknown;
  urls?: unknown;
  digest?: unknown;
}

interface CachedIndex {
  entries: Record<string, IndexEntry[]>;
  etag?: string;
}

export interface HelmRepositoriesOptions {
  /** Where unpacked charts are kept, one directory per digest. */
  dir: string;
  credentials?: (repoURL: string) => Promise<HelmCredentials | undefined>;
  timeoutMs?: number;
  /** Counts requests sent, for tests and metrics. */
  onRequest?: (url: string) => void;
}

export class HelmRepositories {
  private readonly o: HelmRepositoriesOptions;
  private readonly indexes = new Map<string, CachedIndex>();
  /** OCI charts resolved last, by repository, chart and constraint (read again on refresh). */
  private readonly ociResolved = new Map<string, ResolvedChart>();

  constructor(options: HelmRepositoriesOptions) {
    this.o = options;
  }

  /**
   * The newest version of `chart` that `constraint` allows ('' or '*': the newest release).
   * `refresh` reads the index again (a conditional GET: unchanged, it is not sent again);
   * otherwise the index read last is used.
   */
  async resolve(
    repoURL: string,
    chart: string,
    constraint: string,
    refresh: boolean,
  ): Promise<ResolvedChart> {
    const oci = ociRepository(repoURL);
    if (oci) return this.resolveOci(repoURL, oci, chart, constraint, refresh);
    const index = await this.index(repoURL, refresh);
    const entries = index.entries[chart];
    if (!entries?.length)
      throw new HelmRepositoryError(`chart ${chart} is not in the Helm repository ${repoURL}`);
    const range = semverRange(constraint);
    // Chart versions are SemVer 2 (Helm requires it); a prerelease is chosen only when the
    // range names one, as with Helm's own constraints.
    const candidates = entries
      .map((e) => ({ e, v: typeof e.version === 'string' ? semver.valid(e.version) : null }))
      .filter((c): c is { e: IndexEntry; v: string } => c.v !== null && semver.satisfies(c.v, range))
      .sort((a, b) => semver.rcompare(a.v, b.v));
    const best = candidates[0];
    if (!best)
      throw new HelmRepositoryError(
        `no version of chart ${chart} in ${repoURL} matches ${JSON.stringify(constraint || '*')} (it has ${entries
          .map((e) => String(e.version))
          .slice(0, 10)
          .join(', ')})`,
      );
    const urls = Array.isArray(best.e.urls)
      ? best.e.urls.filter((u): u is string => typeof u === 'string')
      : [];
    if (!urls[0]) throw new HelmRepositoryError(`chart ${chart} ${best.v} in ${repoURL} has no URL`);
    return {
      version: String(best.e.version),
      url: new URL(urls[0], withSlash(repoURL)).toString(),
      digest: typeof best.e.digest === 'string' ? best.e.digest : '',
    };
  }

  /** The unpacked chart's directory (it holds `<chart>/Chart.yaml`), downloading it if not cached. */
  async chartDir(repoURL: string, chart: ResolvedChart): Promise<string> {
    const key = chart.digest || createHash('sha256').update(chart.url).digest('hex');
    if (!/^[0-9a-f]{64}$/.test(key))
      throw new HelmRepositoryError(`chart ${chart.url} has an invalid digest ${key}`);
    const dir = join(this.o.dir, 'charts', key);
    if (await isDir(dir)) return dir;
    const body = chart.oci
      ? await this.ociCall(chart.url, async () =>
          (await this.registry(repoURL, chart.oci!.registry)).getBlob(
            chart.oci!.repository,
            `sha256:${chart.digest}`,
            MAX_CHART_BYTES,
          ),
        )
      : await this.get(repoURL, chart.url, MAX_CHART_BYTES);
    if (chart.digest) {
      const actual = createHash('sha256').update(body).digest('hex');
      if (actual !== chart.digest)
        throw new HelmRepositoryError(
          `chart ${chart.url}: its sha256 is ${actual}, the index says ${chart.digest}`,
        );
    }
    await mkdir(dirname(dir), { recursive: true });
    const staging = await mkdtemp(`${dir}.partial-`);
    try {
      await unpack(body, staging);
      await rename(staging, dir).catch(async (err: unknown) => {
        // Unpacked meanwhile by another reconcile: theirs is the same.
        if (!(await isDir(dir))) throw err;
      });
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
    return dir;
  }

  private async resolveOci(
    repoURL: string,
    oci: { registry: string; path: string },
    chart: string,
    constraint: string,
    refresh: boolean,
  ): Promise<ResolvedChart> {
    const key = JSON.stringify([repoURL, chart, constraint]);
    const known = this.ociResolved.get(key);
    if (known && !refresh) return known;
    if (!/^[a-z0-9]+([._-][a-z0-9]+)*$/.test(chart))
      throw new HelmRepositoryError(`${JSON.stringify(chart)} is not a chart name an OCI registry can hold`);
    const repository = oci.path ? `${oci.path}/${chart}` : chart;
    const where = `oci://${oci.registry}/${repository}`;
    const client = await this.registry(repoURL, oci.registry);
    const wanted = constraint.trim();
    // An exact version (build metadata and all) needs no tags list.
    let version = semver.parse(wanted)?.raw === wanted ? wanted : '';
    if (!version) {
      // A range: the tags are the versions.
      const range = semverRange(constraint);
      const tags = await this.ociCall(where, () => client.listTags(repository));
      const best = tags
        .map((t) => t.replace(/_/g, '+'))
        .filter((v) => semver.parse(v)?.raw === v && semver.satisfies(v, range))
        .sort((a, b) => semver.rcompare(a, b))[0];
      if (!best)
        throw new HelmRepositoryError(
          `no version of chart ${chart} in ${where} matches ${JSON.stringify(wanted || '*')} (its tags: ${
            tags.slice(0, 10).join(', ') || 'none'
          })`,
        );
      version = best;
    }
    const tag = version.replace(/\+/g, '_');
    const manifest = await this.ociCall(`${where}:${tag}`, () =>
      client.getManifest(repository, tag, [MEDIA_TYPES.ociManifest]),
    );
    let doc: {
      config?: { mediaType?: unknown };
      layers?: Array<{ mediaType?: unknown; digest?: unknown; size?: unknown }>;
    };
    try {
      doc = JSON.parse(manifest.body.toString('utf8')) as typeof doc;
    } catch {
      throw new HelmRepositoryError(`${where}:${tag}: the manifest is not JSON`);
    }
    if (doc.config?.mediaType !== HELM_CONFIG)
      throw new HelmRepositoryError(
        `${where}:${tag} is not a Helm chart (its config is ${JSON.stringify(doc.config?.mediaType ?? null)}, not ${HELM_CONFIG})`,
      );
    const layer = (doc.layers ?? []).find(
      (l) => typeof l.mediaType === 'string' && HELM_CHART_LAYERS.has(l.mediaType),
    );
    const digest =
      typeof layer?.digest === 'string' ? /^sha256:([0-9a-f]{64})$/.exec(layer.digest)?.[1] : undefined;
    if (!digest) throw new HelmRepositoryError(`${where}:${tag} has no chart layer with a sha256 digest`);
    if (typeof layer?.size === 'number' && layer.size > MAX_CHART_BYTES)
      throw new HelmRepositoryError(
        `${where}:${tag}: the chart is ${layer.size} bytes, more than the ${MAX_CHART_BYTES} allowed`,
      );
    const resolved: ResolvedChart = {
      version,
      url: `${where}:${tag}`,
      digest,
      oci: { registry: oci.registry, repository },
    };
    this.ociResolved.set(key, resolved);
    return resolved;
  }

  /** A registry client answering with the repository Secret's credentials for `repoURL`. */
  private async registry(repoURL: string, registry: string): Promise<RegistryClient> {
    const creds = await this.o.credentials?.(repoURL);
    const timeoutMs = this.o.timeoutMs ?? 60_000;
    return new RegistryClient({
      registry,
      // Only this registry's challenge gets them: the client asks for no other host.
      credentials: () =>
        Promise.resolve(creds ? { username: creds.username ?? '', password: creds.password } : undefined),
      fetch: (url, init) => {
        this.o.onRequest?.(url instanceof Request ? url.url : url.toString());
        return fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
      },
      retries: 2,
    });
  }

  /** Registry errors as Helm repository errors (the reconciler reports those as conditions). */
  private async ociCall<T>(where: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof RegistryError) throw new HelmRepositoryError(`${where}: ${err.message}`);
      if (err instanceof SyntaxError) throw new HelmRepositoryError(`${where}: ${err.message}`);
      throw err;
    }
  }

  private async index(repoURL: string, refresh: boolean): Promise<CachedIndex> {
    const known = this.indexes.get(repoURL);
    if (known && !refresh) return known;
    const url = new URL('index.yaml', withSlash(repoURL)).toString();
    const res = await this.request(repoURL, url, known?.etag ? { 'If-None-Match': known.etag } : {});
    if (res.status === 304 && known) return known;
    const text = (await readLimited(res, MAX_INDEX_BYTES, url)).toString('utf8');
    let doc: unknown;
    try {
      doc = parse(text, { maxAliasCount: 100 });
    } catch (err) {
      throw new HelmRepositoryError(`${url} is not a Helm repository index: ${(err as Error).message}`);
    }
    const entries = (doc as { entries?: unknown } | null)?.entries;
    if (!entries || typeof entries !== 'object')
      throw new HelmRepositoryError(`${url} is not a Helm repository index (no entries)`);
    const etag = res.headers.get('etag') ?? undefined;
    const index: CachedIndex = { entries: entries as CachedIndex['entries'], ...(etag ? { etag } : {}) };
    this.indexes.set(repoURL, index);
    return index;
  }

  private async get(repoURL: string, url: string, limit: number): Promise<Buffer> {
    return readLimited(await this.request(repoURL, url, {}), limit, url);
  }

  private async request(repoURL: string, url: string, headers: Record<string, string>): Promise<Response> {
    this.o.onRequest?.(url);
    const creds = await this.o.credentials?.(repoURL);
    // Credentials go only where the repository is: a chart URL on another host gets none.
    const sameOrigin = new URL(url).origin === new URL(repoURL).origin;
    const auth =
      creds && sameOrigin
        ? {
            Authorization: `Basic ${Buffer.from(`${creds.username ?? ''}:${creds.password}`).toString('base64')}`,
          }
        : {};
    let res: Response;
    try {
      res = await fetch(url, {
        headers: { ...headers, ...auth },
        redirect: 'follow',
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 60_000),
      });
    } catch (err) {
      throw new HelmRepositoryError(`fetching ${url}: ${(err as Error).message}`);
    }
    if (res.status === 304) return res;
    if (!res.ok) {
      await res.body?.cancel();
      const hint =
        res.status === 401 || res.status === 403 ? ' (check the repository Secret for this URL)' : '';
      throw new HelmRepositoryError(`fetching ${url}: HTTP ${res.status}${hint}`);
    }
    return res;
  }
}

/** Masterminds constraints (Helm's) as node-semver reads them: `>=1.2, <2` is an AND of both. */
function semverRange(constraint: string): string {
  const c = constraint.trim();
  if (!c || c === 'latest') return '*';
  const range = c.replace(/,/g, ' ');
  if (semver.validRange(range) === null)
    throw new HelmRepositoryError(`${JSON.stringify(c)} is not a version or a semver range`);
  return range;
}

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

async function isDir(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

async function readLimited(res: Response, limit: number, url: string): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length') ?? 0);
  if (declared > limit) {
    await res.body?.cancel();
    throw new HelmRepositoryError(`${url} is ${declared} bytes, more than the ${limit} allowed`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body ?? []) {
    size += (chunk as Uint8Array).length;
    if (size > limit) throw new HelmRepositoryError(`${url} is more than the ${limit} bytes allowed`);
    chunks.push(Buffer.from(chunk as Uint8Array));
  }
  return Buffer.concat(chunks);
}

/** Unpacks a chart archive (.tgz) into `dir`: regular files and directories only, none outside it. */
async function unpack(archive: Buffer, dir: string): Promise<void> {
  const tar = extract();
  let total = 0;
  const done = (async () => {
    for await (const entry of tar) {
      const name = normalize(entry.header.name);
      if (name.startsWith('..') || name.startsWith(sep) || name.includes(`${sep}..${sep}`))
        throw new HelmRepositoryError(`chart archive member ${entry.header.name} leaves its directory`);
      const target = join(dir, name);
      if (entry.header.type === 'directory') {
        await mkdir(target, { recursive: true });
        entry.resume();
        continue;
      }
      if (entry.header.type !== 'file') {
        // Symlinks and devices have no place in a chart.
        entry.resume();
        continue;
      }
      const chunks: Buffer[] = [];
      for await (const chunk of entry) {
        total += (chunk as Buffer).length;
        if (total > MAX_CHART_BYTES * 4)
          throw new HelmRepositoryError('chart archive unpacks to more than allowed');
        chunks.push(chunk as Buffer);
      }
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, Buffer.concat(chunks));
    }
  })();
  await Promise.all([pipeline(Readable.from([archive]), createGunzip(), tar), done]).catch((err: unknown) => {
    if (err instanceof HelmRepositoryError) throw err;
    throw new HelmRepositoryError(`the chart archive cannot be unpacked: ${(err as Error).message}`);
  });
}
