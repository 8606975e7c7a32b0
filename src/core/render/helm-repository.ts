// Charts from HTTP(S) Helm repositories, as an Argo CD Application names them (`source.chart`,
// `repoURL`, `targetRevision` a version or a semver range):
// https://argo-cd.readthedocs.io/en/stable/user-guide/helm/. The repository's index.yaml says which
// versions exist and each one's digest; the chart archive is downloaded once per digest, checked
// against it, and unpacked into the cache, so a chart that did not change costs no network but
// the index, and that only when the application is refreshed (poll, webhook, refresh request).
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
    const body = await this.get(repoURL, chart.url, MAX_CHART_BYTES);
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
